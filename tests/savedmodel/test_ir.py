"""Graph validation and the builder: every refusal names the node at fault."""

import numpy as np
import pytest

from savedmodel import Graph, GraphBuilder, GraphError, Node, TensorSpec
from savedmodel.ops import OPS


def dense_graph(**node_overrides) -> Graph:
    node = Node("d", "Dense", ["x"], ["y"], {"units": 3}, {"kernel": "d/kernel", "bias": "d/bias"})
    for key, value in node_overrides.items():
        setattr(node, key, value)
    weights = {"d/kernel": np.zeros((4, 3), "f4"), "d/bias": np.zeros(3, "f4")}
    return Graph([TensorSpec("x", "float32", (None, 4))], [TensorSpec("y", "float32", (None, 3))], [node], weights)


def test_validate_fills_defaults_and_infers_shapes():
    g = dense_graph()
    specs = g.validate()
    assert specs["y"] == TensorSpec("y", "float32", (None, 3))
    assert g.nodes[0].attrs == {"units": 3, "activation": "linear", "use_bias": True}


def test_every_op_declares_a_shape_rule_and_typed_defaults():
    for name, spec in OPS.items():
        assert callable(spec.shape), name
        for attr_name, attr in spec.attrs.items():
            assert attr.default is None or attr.check(attr.default), (name, attr_name)


@pytest.mark.parametrize(
    "override, match",
    [
        ({"op": "Densee"}, r"node 'd': unknown op 'Densee'; the catalogue has: .*Dense"),
        ({"inputs": ["nope"]}, r"node 'd': input tensor 'nope' is produced by no node"),
        ({"attrs": {"units": 3, "colour": 1}}, r"node 'd': unknown attrs \['colour'\] for op Dense"),
        ({"attrs": {"units": "3"}}, r"node 'd': attr 'units' of op Dense must be int, got '3'"),
        ({"attrs": {"units": 3, "activation": "wobble"}}, r"attr 'activation' of op Dense must be one of"),
        ({"weights": {"bias": "d/bias"}}, r"node 'd': op Dense needs weights \['kernel'\]"),
        ({"weights": {"kernel": "missing"}}, r"node 'd': weight 'missing' \(role kernel\) is not in"),
        ({"attrs": {"units": 5}}, r"node 'd': weight 'd/kernel' \(role kernel\) has shape \[4, 3\], expected \[4, 5\]"),
        ({"inputs": ["x", "x"]}, r"node 'd': op Dense takes 1 inputs, got 2"),
    ],
)
def test_validation_errors_name_the_node(override, match):
    with pytest.raises(GraphError, match=match) as info:
        dense_graph(**override).validate()
    if info.value.node is not None:
        assert info.value.node == "d"


def test_duplicate_node_name():
    g = dense_graph()
    g.nodes.append(Node("d", "Activation", ["y"], ["z"], {"activation": "relu"}))
    with pytest.raises(GraphError, match=r"node 'd': duplicate node name"):
        g.validate()


def test_tensor_produced_twice():
    g = dense_graph()
    g.nodes.append(Node("e", "Activation", ["x"], ["y"], {"activation": "relu"}))
    with pytest.raises(GraphError, match=r"node 'e': tensor 'y' is produced twice"):
        g.validate()


def test_cycle():
    g = Graph(
        [TensorSpec("x", "float32", (None, 4))],
        [TensorSpec("b", "float32", (None, 4))],
        [Node("a", "Add", ["x", "b"], ["a"]), Node("b", "Activation", ["a"], ["b"], {"activation": "relu"})],
    )
    with pytest.raises(GraphError, match=r"the graph has a cycle through nodes 'a', 'b'"):
        g.validate()


def test_output_not_produced():
    g = dense_graph()
    g.outputs.append(TensorSpec("ghost", "float32", (None,)))
    with pytest.raises(GraphError, match=r"graph output 'ghost' is produced by no node"):
        g.validate()


def test_incompatible_input_shape_names_node_and_inputs():
    b = GraphBuilder()
    x = b.input("x", (None, 4))
    y = b.input("y", (None, 5))
    b.op("Add", x, y, name="sum")
    with pytest.raises(GraphError, match=r"node 'sum': op Add cannot take inputs x\[None, 4\], y\[None, 5\]"):
        b.build("sum")


def test_builder_names_nodes_and_weights():
    b = GraphBuilder()
    x = b.input("x", (None, 4))
    h = b.op("Dense", x, units=8, activation="relu", kernel=np.ones((4, 8), "f4"), bias=np.zeros(8, "f4"))
    y = b.op("Dense", h, units=2, kernel=np.ones((8, 2), "f4"), bias=None, name="probs")
    g = b.build(y)
    assert [n.name for n in g.nodes] == ["dense", "probs"]
    assert sorted(g.weights) == ["dense/bias", "dense/kernel", "probs/kernel"]
    assert g.outputs == [TensorSpec("probs", "float32", (None, 2))]
    assert g.parameter_count() == 4 * 8 + 8 + 8 * 2


def test_builder_rejects_unknown_op():
    with pytest.raises(GraphError, match=r"unknown op 'Conv9D'; the catalogue has: "):
        GraphBuilder().op("Conv9D", "x")


def test_graph_json_round_trip():
    g = dense_graph()
    g.validate()
    again = Graph.from_json(g.to_json(), g.weights)
    assert again.to_json() == g.to_json()


def test_big_endian_weights_are_float32():
    from savedmodel.dtypes import as_dtype

    assert as_dtype(np.dtype(">f4")) == "float32" and as_dtype("<i8") == "int64"
    g = dense_graph()
    g.weights["d/kernel"] = g.weights["d/kernel"].astype(">f4")
    g.validate()
    assert g.to_json()["weights"]["d/kernel"] == {"dtype": "float32", "shape": [4, 3]}
