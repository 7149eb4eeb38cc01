"""The tools on top of runs: study, sweep (Ray Tune trials), report, export and serve. Each goes through the
command line's ``fit`` and ``test``, or reads the run folders they write."""
