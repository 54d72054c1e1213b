"""Reporting: curves from sweeps, consistency checks, tables, the gamma report, a plotting kit and the figures."""
