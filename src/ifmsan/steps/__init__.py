"""Pipeline steps: read and write NetCDF, load and fetch images and weights, extract IFMs, sweep, train."""
