"""The Keras importer: a live Keras 3 model, a ``.keras`` file or a legacy ``.h5`` file -> Graph.

>>> from savedmodel.importers.keras import import_keras_model, import_keras_file
>>> graph, source = import_keras_model(model)          # doctest: +SKIP
>>> graph, source = import_keras_file("model.keras")   # doctest: +SKIP
>>> source                                             # doctest: +SKIP
{'framework': 'keras', 'version': '3.15.1', 'class': 'Sequential'}

Reading files needs numpy and h5py only; Keras is imported only for a live model.
"""

from savedmodel.importers.keras.files import import_keras_file
from savedmodel.importers.keras.graph import supported_classes
from savedmodel.importers.keras.live import import_keras_model

__all__ = ["import_keras_file", "import_keras_model", "supported_classes"]
