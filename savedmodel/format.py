"""Every name and number of the bundle file format (v1.0), in one place.

``docs/FORMAT.md`` is the normative description of the file; this module is
its vocabulary. Readers and writers use these constants, never literals, so a
format change is a change here and in FORMAT.md.

>>> FILE_NAME, FORMAT_VERSION
('saved_model.h5', (1, 0))
"""

from __future__ import annotations

# -- files and directories ---------------------------------------------------------
FILE_NAME = "saved_model.h5"
TEMP_PREFIX = ".tmp-"  # temporary version directories; hidden, never a version

# The 8 bytes every HDF5 file without a user block starts with.
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"

# -- identity and version ----------------------------------------------------------
FORMAT_NAME = "savedmodel-bundle"
FORMAT_VERSION: tuple[int, int] = (1, 0)
FORMAT_VERSION_STR = f"{FORMAT_VERSION[0]}.{FORMAT_VERSION[1]}"
PRODUCER = "savedmodel"
PACKAGE = "savedmodel-toolkit"  # the distribution to upgrade when a file is too new

# -- root attributes ---------------------------------------------------------------
ATTR_FORMAT = "format"
ATTR_FORMAT_VERSION = "format_version"
ATTR_PRODUCER = "producer"
ATTR_PRODUCER_VERSION = "producer_version"
ATTR_CREATED = "created"
ATTR_DIGEST = "digest"
DIGEST_PREFIX = "sha256:"

# -- root members ------------------------------------------------------------------
GRAPH = "graph"  # scalar UTF-8 string dataset: Graph.to_json()
SIGNATURES = "signatures"  # scalar UTF-8 string dataset: {name: Signature.to_json()}
METADATA = "metadata"  # scalar UTF-8 string dataset: free-form JSON object
WEIGHTS = "weights"  # group: one dataset per weight key
ASSETS = "assets"  # group: one dataset per asset name
REQUIRED_MEMBERS = (GRAPH, SIGNATURES, METADATA, WEIGHTS, ASSETS)

# -- dataset attributes ------------------------------------------------------------
ATTR_CHECKSUM = "sha256"  # on every dataset the reader reads: hex SHA-256 of its record or text
ATTR_ASSET_KIND = "kind"  # on every asset dataset
ATTR_DTYPE = "dtype"  # "string" on string tensors, stored as uint8 records (FORMAT.md 3.1)

ASSET_TEXT = "text"  # list[str]: labels, vocabularies
ASSET_BYTES = "bytes"  # bytes: opaque blobs
ASSET_ARRAY = "array"  # numpy.ndarray of any IR dtype
ASSET_KINDS = (ASSET_TEXT, ASSET_BYTES, ASSET_ARRAY)

# Characters of a weight key or asset name that cannot appear in an HDF5 link
# name as they are, and their escapes. '%' is escaped so decoding is unambiguous;
# '.' only when it leads the name ('.' and '..' are not usable link names).
NAME_ESCAPES = {"%": "%25", "/": "%2F"}
LEADING_DOT_ESCAPE = "%2E"

# -- graph JSON keys (written by Graph.to_json) --------------------------------------
GRAPH_WEIGHTS = "weights"
WEIGHT_DTYPE = "dtype"
WEIGHT_SHAPE = "shape"

# -- signature JSON keys and methods -------------------------------------------------
SIG_METHOD = "method"
SIG_INPUTS = "inputs"
SIG_OUTPUTS = "outputs"
SIG_LABELS = "labels"

METHOD_PREDICT = "predict"
METHOD_CLASSIFY = "classify"
METHOD_REGRESS = "regress"
METHODS = (METHOD_PREDICT, METHOD_CLASSIFY, METHOD_REGRESS)
DEFAULT_SIGNATURE = "serving_default"

# -- metadata JSON keys (conventional, not enforced) ----------------------------------
META_SOURCE = "source"  # {"framework": ..., "version": ...}
META_USER = "user"  # whatever the caller passed as metadata=

# -- storage -------------------------------------------------------------------------
# The format uses no variable-length types, but a dataset of one may sit in a
# part of the file a reader ignores. Each element takes, in the dataset's own
# storage, a 4-byte length and a global heap ID (an address of the file's
# address size plus a 4-byte index); that bounds its declared size too.
VLEN_LENGTH_SIZE = 4
VLEN_INDEX_SIZE = 4
