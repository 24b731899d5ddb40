-- The schema autoinfer's previous release (commit 90325f9) made with create_all, as compiled
-- for postgresql from that release's own table modules. Tests build a database from it and upgrade it.

CREATE TABLE api_keys (
	id VARCHAR(40) NOT NULL, 
	name VARCHAR(100) NOT NULL, 
	role VARCHAR(16) NOT NULL, 
	key_hash VARCHAR(64) NOT NULL, 
	created_at TIMESTAMP WITHOUT TIME ZONE NOT NULL, 
	last_used_at TIMESTAMP WITHOUT TIME ZONE, 
	revoked_at TIMESTAMP WITHOUT TIME ZONE, 
	PRIMARY KEY (id), 
	UNIQUE (key_hash)
);

CREATE UNIQUE INDEX ux_api_keys_live_name ON api_keys (name) WHERE revoked_at IS NULL;

CREATE TABLE events (
	id SERIAL NOT NULL, 
	idempotency_key TEXT, 
	dedup_key TEXT, 
	source VARCHAR(300) NOT NULL, 
	bucket VARCHAR(255), 
	key TEXT, 
	event_name VARCHAR(100), 
	event_time TIMESTAMP WITHOUT TIME ZONE, 
	etag VARCHAR(200), 
	version_id VARCHAR(1024), 
	sequencer VARCHAR(200), 
	size BIGINT, 
	flavour VARCHAR(16), 
	received_at TIMESTAMP WITHOUT TIME ZONE NOT NULL, 
	outcome VARCHAR(16) NOT NULL, 
	reason TEXT, 
	trigger VARCHAR(200), 
	job_id VARCHAR(64), 
	duplicate_of INTEGER, 
	deliveries INTEGER NOT NULL, 
	raw JSON, 
	body_excerpt TEXT, 
	PRIMARY KEY (id), 
	UNIQUE (dedup_key)
);

CREATE INDEX ix_events_idempotency_key ON events (idempotency_key);

CREATE INDEX ix_events_job_id ON events (job_id);

CREATE INDEX ix_events_outcome ON events (outcome);

CREATE INDEX ix_events_received_at ON events (received_at);

CREATE INDEX ix_events_source_outcome ON events (source, outcome);

CREATE TABLE jobs (
	id VARCHAR(64) NOT NULL, 
	name VARCHAR(200) NOT NULL, 
	spec JSON NOT NULL, 
	status VARCHAR(40) NOT NULL, 
	attempt INTEGER NOT NULL, 
	max_attempts INTEGER NOT NULL, 
	reason TEXT, 
	created_at TIMESTAMP WITHOUT TIME ZONE NOT NULL, 
	updated_at TIMESTAMP WITHOUT TIME ZONE NOT NULL, 
	source VARCHAR(200) NOT NULL, 
	event_id VARCHAR(64), 
	lease_owner VARCHAR(100), 
	lease_expires_at TIMESTAMP WITHOUT TIME ZONE, 
	not_before TIMESTAMP WITHOUT TIME ZONE, 
	stop_requested BOOLEAN NOT NULL, 
	progress_done INTEGER, 
	progress_total INTEGER, 
	output_location TEXT, 
	model_info JSON, 
	PRIMARY KEY (id)
);

CREATE INDEX ix_jobs_claim ON jobs (status, not_before);

CREATE INDEX ix_jobs_created_at ON jobs (created_at);

CREATE INDEX ix_jobs_name ON jobs (name);

CREATE INDEX ix_jobs_status ON jobs (status);

CREATE TABLE secrets (
	name VARCHAR(128) NOT NULL, 
	ciphertext TEXT NOT NULL, 
	created_at TIMESTAMP WITHOUT TIME ZONE NOT NULL, 
	updated_at TIMESTAMP WITHOUT TIME ZONE NOT NULL, 
	PRIMARY KEY (name)
);

CREATE TABLE source_cursors (
	source VARCHAR(300) NOT NULL, 
	started_at TIMESTAMP WITHOUT TIME ZONE NOT NULL, 
	scanned_at TIMESTAMP WITHOUT TIME ZONE, 
	PRIMARY KEY (source)
);

CREATE TABLE source_seen_objects (
	source VARCHAR(300) NOT NULL, 
	bucket VARCHAR(255) NOT NULL, 
	key TEXT NOT NULL, 
	etag VARCHAR(200), 
	size BIGINT, 
	stamp VARCHAR(1024), 
	seen_at TIMESTAMP WITHOUT TIME ZONE NOT NULL, 
	PRIMARY KEY (source, bucket, key)
);

CREATE TABLE event_dispatches (
	id SERIAL NOT NULL, 
	event_id INTEGER NOT NULL, 
	trigger VARCHAR(200) NOT NULL, 
	job_id VARCHAR(64), 
	error TEXT, 
	at TIMESTAMP WITHOUT TIME ZONE NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(event_id) REFERENCES events (id) ON DELETE CASCADE
);

CREATE INDEX ix_event_dispatches_event_id ON event_dispatches (event_id);

CREATE INDEX ix_event_dispatches_trigger ON event_dispatches (trigger);

CREATE TABLE job_logs (
	id SERIAL NOT NULL, 
	job_id VARCHAR(64) NOT NULL, 
	at TIMESTAMP WITHOUT TIME ZONE NOT NULL, 
	stream VARCHAR(16) NOT NULL, 
	line TEXT NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(job_id) REFERENCES jobs (id) ON DELETE CASCADE
);

CREATE INDEX ix_job_logs_job ON job_logs (job_id, id);

CREATE TABLE job_transitions (
	id SERIAL NOT NULL, 
	job_id VARCHAR(64) NOT NULL, 
	status VARCHAR(40) NOT NULL, 
	attempt INTEGER NOT NULL, 
	at TIMESTAMP WITHOUT TIME ZONE NOT NULL, 
	reason TEXT, 
	PRIMARY KEY (id), 
	FOREIGN KEY(job_id) REFERENCES jobs (id) ON DELETE CASCADE
);

CREATE INDEX ix_job_transitions_job_id ON job_transitions (job_id);
