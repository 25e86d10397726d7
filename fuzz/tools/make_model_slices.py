#!/usr/bin/env python3
"""Writes small ONNX seeds cut from the shipped models, for the `onnx_ingest` target.

    /work/venv/bin/python fuzz/tools/make_model_slices.py [OUT_DIR]

(needs only the `onnx` package). One execution of the target on the whole
models/mnist_unet.onnx parses 1.7 MB, types and declutters 289 nodes; a mutation
of it mostly lands in weight bytes. The seeds written here are slices of the
shipped models with the same node attributes, names and (small) weights:

* `unet_<first>_<last>.onnx`: nodes first..last of models/mnist_unet.onnx (a
  block: conv_in, a ResBlock, the attention, a skip Concat, Resize, conv_out),
  plus the timestep MLP and constants they read. Activations coming from before
  the slice become the image input `x` (one input renamed, or several `Identity`
  copies of `x` when a Concat reads two); the slice's last output is the graph
  output. Many slices map `x` to a same-shaped output, so the converter lowers
  them completely.
* `classifier_<n>.onnx`: the first n nodes of models/mnist_classifier.onnx, with
  the timestep input `t` the converter requires and one output.

Initializers with more than MAX_ELEMS elements become `ConstantOfShape` nodes (same
shape, one value per weight), which keeps every file a few KB; smaller ones are copied as is.
"""
import os
import sys

import numpy as np
import onnx
from onnx import helper, numpy_helper, shape_inference, TensorProto

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS = os.path.join(HERE, "..", "..", "models")
MAX_ELEMS = 256

# (first, last) node indices of models/mnist_unet.onnx, both included.
UNET_SLICES = [
    (0, 12),     # timestep embedding MLP + conv_in
    (13, 45),    # down0 ResBlock (16 -> 16 channels, 28x28)
    (46, 78),    # ds0 stride-2 conv + down1 ResBlock with 1x1 skip conv (16 -> 32)
    (112, 140),  # mid attention (64 channels, 7x7): MatMul, Softmax, Transpose
    (141, 171),  # mid ResBlock (64 -> 64)
    (172, 204),  # skip Concat + up2 ResBlock (128 -> 64)
    (205, 207),  # nearest Resize + us1 conv (64 -> 32 channels, 7x7 -> 14x14)
    (208, 240),  # skip Concat + up1 ResBlock (64 -> 32, 14x14)
    (277, 288),  # norm_out, SiLU, conv_out (16 -> 1 channel)
]
CLASSIFIER_PREFIXES = [4, 8]  # the whole classifier materializes its 1.6 MB fc weight


def shapes_of(model):
    inferred = shape_inference.infer_shapes(model)
    g = inferred.graph
    out = {}
    for vi in list(g.value_info) + list(g.input) + list(g.output):
        dims = [d.dim_value for d in vi.type.tensor_type.shape.dim]
        # Shape inference leaves the batch dimension of reshaped tensors unknown (0).
        if dims and dims[0] == 0:
            dims[0] = 1
        if 0 in dims:
            dims = None
        out[vi.name] = (vi.type.tensor_type.elem_type, dims)
    return out


def small_inits(graph, used):
    """(initializers kept as is, ConstantOfShape nodes for the large ones)."""
    inits, nodes = [], []
    for k, init in enumerate(graph.initializer):
        if init.name not in used:
            continue
        arr = numpy_helper.to_array(init)
        if arr.size <= MAX_ELEMS:
            inits.append(init)
            continue
        shape_name = init.name + "__shape"
        inits.append(numpy_helper.from_array(np.array(arr.shape, dtype=np.int64), shape_name))
        # A different value per weight, so that identical-looking layers stay distinct.
        value = numpy_helper.from_array(np.array([0.01 * (1 + k % 13)], dtype=arr.dtype))
        nodes.append(
            helper.make_node("ConstantOfShape", [shape_name], [init.name], value=value,
                             name=init.name + "__fill"))
    return inits, nodes


def write(path, graph_nodes, inputs, output, inits, opset):
    g = helper.make_graph(graph_nodes, os.path.basename(path)[:-5], inputs, [output], inits)
    m = helper.make_model(g, opset_imports=opset, producer_name="make_model_slices")
    m.ir_version = 8
    onnx.checker.check_model(m)
    onnx.save(m, path)
    print(f"{path}: {len(graph_nodes)} nodes, {os.path.getsize(path)} bytes")


def unet_slice(model, shapes, first, last, out_dir):
    g = model.graph
    nodes = list(g.node)
    producer = {o: i for i, n in enumerate(nodes) for o in n.output}
    init_names = {i.name for i in g.initializer}
    x_name, t_name = g.input[0].name, g.input[1].name

    def ancestors(name):
        """Node indices name depends on, or None when it depends on x."""
        seen, stack = set(), [name]
        while stack:
            v = stack.pop()
            if v == x_name:
                return None
            if v in producer and producer[v] not in seen:
                seen.add(producer[v])
                stack.extend(i for i in nodes[producer[v]].input if i)
        return seen

    keep = set(range(first, last + 1))
    acts = []  # activations from before the slice
    for i in range(first, last + 1):
        for v in nodes[i].input:
            if not v or v in init_names or v == t_name or (v in producer and producer[v] in keep):
                continue
            if v == x_name:
                continue
            anc = ancestors(v)
            if anc is None:
                if v not in acts:
                    acts.append(v)
            else:
                keep |= anc  # t-only or constant: bring its producers along
    sel = [nodes[i] for i in sorted(keep)]
    pre = []
    if acts:
        shape = shapes[acts[0]][1]
        assert all(shapes[a][1] == shape for a in acts), (first, last, acts)
        xin = helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)
        pre = [helper.make_node("Identity", ["x"], [a], name=f"x_to_{k}") for k, a in enumerate(acts)]
    else:
        xin = g.input[0]
    used = {v for n in sel for v in n.input}
    inits, fills = small_inits(g, used)
    last_out = nodes[last].output[0]
    et, dims = shapes[last_out]
    out = helper.make_tensor_value_info(last_out, et, dims)
    path = os.path.join(out_dir, f"unet_{first:03d}_{last:03d}.onnx")
    write(path, fills + pre + sel, [xin, g.input[1]], out, inits, model.opset_import)


def classifier_prefix(model, shapes, n, out_dir):
    g = model.graph
    sel = list(g.node)[:n]
    used = {v for node in sel for v in node.input}
    inits, fills = small_inits(g, used)
    last_out = sel[-1].output[0]
    et, dims = shapes[last_out]
    out = helper.make_tensor_value_info(last_out, et, dims)
    t = helper.make_tensor_value_info("t", TensorProto.INT64, [1])
    path = os.path.join(out_dir, f"classifier_{n:02d}.onnx")
    write(path, fills + sel, [g.input[0], t], out, inits, model.opset_import)


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "seeds", "onnx_ingest")
    os.makedirs(out_dir, exist_ok=True)
    unet = onnx.load(os.path.join(MODELS, "mnist_unet.onnx"))
    shapes = shapes_of(unet)
    for first, last in UNET_SLICES:
        unet_slice(unet, shapes, first, last, out_dir)
    cls = onnx.load(os.path.join(MODELS, "mnist_classifier.onnx"))
    shapes = shapes_of(cls)
    for n in CLASSIFIER_PREFIXES:
        classifier_prefix(cls, shapes, n, out_dir)


if __name__ == "__main__":
    main()
