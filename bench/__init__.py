"""`python -m bench` (`make bench`): autoinfer's throughput and latency against the bare model.

One module per measurement: `images` builds the image set and its zips, `limit` runs the bare
model loop, `pipeline` drives a real in-process service through its watched folder, `naive`
runs one fresh process per upload, `memory` samples the service's resident memory.
"""
