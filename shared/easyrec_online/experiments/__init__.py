"""Experiments: A/B tests and interleaving, run by the service that serves.

  definition.py   what an experiment is (arms, strategies, weights, layer), validated at the edge
  assignment.py   which arm a user gets: stable hashes of the experiment's salt and the user id
  interleave.py   team-draft interleaving of two arms' rankings
  store.py        definitions and the experiment log (impressions, successes): one interface, two backends
  statistics.py   per-arm results, always-valid sequential tests (mSPRT), sample-ratio mismatch
  results.py      the log -> per-user outcomes (attribution) -> the statistics
  control.py      the admin routes' logic: create, list, read, stop, conclude
  router.py       serving: the running experiments, the arm of a request, the impression it records
"""
