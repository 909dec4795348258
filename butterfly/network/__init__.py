"""The network: a model as data (layer specs + weights in the C core), its four parts and
two halves, on either backend; the ways to make one (ResNet builders, ONNX import, a unit
inserted at a split point, the plain form of one) and to write one out (model files, ONNX)."""

from . import opencl
from .backends import MAX_BATCH, OneDNN, OpenCL, PlanCache
from .layers import LayerList, infer_layers, layer_info
from .load import load
from .network import Network
from .opencl import MobileHalf
from .parts import (
                    CLOUD_PARTS,
                    HALVES,
                    HEAD,
                    MOBILE_PARTS,
                    PARTS,
                    REDUCE,
                    RESTORE,
                    TAIL,
                    half_range,
                    part_id,
)
from .payload import Payload, bytes_per_image, coded_sizes, payload_arrays, zstd_size
from .resnet import resnet, resnet18, resnet34, resnet50
from .split import (
                    candidate_network,
                    insert_butterfly,
                    plain_network,
                    remove_butterfly,
                    split_point,
)
from .unit import Butterfly, butterfly_unit

__all__ = [
    "CLOUD_PARTS", "HALVES", "HEAD", "MAX_BATCH", "MOBILE_PARTS", "PARTS", "REDUCE", "RESTORE",
    "TAIL", "Butterfly", "LayerList", "MobileHalf", "Network", "OneDNN", "OpenCL", "Payload",
    "PlanCache", "butterfly_unit", "bytes_per_image", "candidate_network", "coded_sizes",
    "half_range", "infer_layers", "insert_butterfly", "layer_info", "load", "opencl", "part_id",
    "payload_arrays", "plain_network", "remove_butterfly", "resnet", "resnet18", "resnet34",
    "resnet50", "split_point", "zstd_size",
]
