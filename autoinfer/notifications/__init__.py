"""Completion notifications: a durable outbox of job-end messages, delivered as signed
webhooks (Standard Webhooks) or SQS messages, retried until delivered or expired."""
