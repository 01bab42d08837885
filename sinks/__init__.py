"""Channel stock sinks: `allocations` topic -> each marketplace shop's stock, and reconciliation.

  listings.py    which listings each shop has (merchant code, listing id, platform SKU id)
  targets.py     master SKU + channel -> the listings whose quantity depends on it (bundles too)
  coalesce.py    latest allocation per (SKU, channel), dirty listings, what was last pushed
  offsets.py     which consumed offsets may be committed (everything below pushed or parked)
  decisions.py   what a stock-write result means: done, wait (throttled), retry, park
  quota.py       per-shop token bucket in platform API calls, throttle pauses
  pusher.py      one push loop per shop: take dirty listings, write, apply decisions
  dead_letter.py the `channel.dead-letter` record format, parking, and `dlq retry`
  reconcile.py   read shops' stock back, confirm drift, publish it, ask for a re-push
  process.py     the sink process: consumer, warm-up, commit, metrics server
  metrics.py     Prometheus metrics of the sink

Pure logic (listings, targets, coalesce, offsets, decisions, drift confirmation) has no I/O;
the rest is thin I/O around it.
"""
