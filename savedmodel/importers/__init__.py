"""Importers: turn a model from training code into a :class:`savedmodel.ir.Graph`.

Each framework has its own subpackage and imports the framework lazily, only
when handed a live model of it; reading saved files needs numpy and h5py only.

>>> from savedmodel.importers.keras import import_keras_file
>>> graph, source = import_keras_file("model.keras")    # doctest: +SKIP
"""
