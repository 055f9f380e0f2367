"""savedmodel: the graph IR, the HDF5 bundle format and the importers."""
