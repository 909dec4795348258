"""Writes the seed model files for fuzz_model (tests/fuzz/corpus_model): three tiny networks
that between them use every layer type the model file can hold, with a butterfly unit
(depthwise + deconv, full + nearest upsampling), and one of them with metadata that the
core keeps as it is but that is no valid text or no map of text keys (strs that are not
UTF-8, int and array keys, an ext value, deep nesting: what the Python layer once failed
on with UnicodeDecodeError / ValueError).  Run once; the seeds are committed."""

from __future__ import annotations

import sys
from pathlib import Path

import butterfly as bf
from butterfly.network import Butterfly, LayerList, butterfly_unit
from butterfly.network.resnet import _basic_block


def tiny(unit: Butterfly, pool: str, seed: int) -> bf.Network:
    L = LayerList((1, 8, 8), seed=seed)
    L.conv_bn(2, 3, 1, name="stem")
    _basic_block(L, 2, 1, "rb1")
    butterfly_unit(L, unit)
    _basic_block(L, 4, 2, "rb2")
    L.pool(pool, 2, 2, name="pool")
    L.simple("relu6", name="clip")
    L.global_avgpool(name="gap")
    L.linear(3, name="fc")
    L.simple("softmax", name="prob")
    return bf.Network.from_layers(L.layers, L.params, butterfly=unit.to_dict())


# metadata blobs: each is one msgpack object, so the core loads the file
ODD_META = {
    "meta_str_not_utf8": b"\x82\xa6config\x81\xa4arch\xa2\xff\xfe\xa7classes\x92\xa2\xc3\x28\xa1a",
    "meta_int_and_array_keys": b"\x83\x01\x02\x91\x01\xc0\xa9butterfly\xa1x",
    "meta_ext_and_bin": b"\x82\xa4note\xd4\x05\x01\xa4blob\xc4\x03abc",
    "meta_deep": b"\x81\xa1d" + b"\x91" * 24 + b"\x01",
}


def main(out: str) -> int:
    d = Path(out)
    d.mkdir(parents=True, exist_ok=True)
    nets = {"tiny_depthwise_deconv": tiny(Butterfly(1, 1, 2), "maxpool", 0),
            "tiny_full_nearest": tiny(Butterfly(1, 2, 2, spatial="full", upsample="nearest"),
                                      "avgpool", 1),
            "tiny_channels_only": tiny(Butterfly(1, 1, 1), "maxpool", 2)}
    for name, net in nets.items():
        net.save(d / name)
        print(name, (d / name).stat().st_size, "bytes")
    for name, blob in ODD_META.items():
        model = bf._C.Model(nets["tiny_channels_only"].to_bytes())
        model.set_meta(blob)
        (d / name).write_bytes(model.to_bytes())
        print(name, (d / name).stat().st_size, "bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).parent /
                                                          "corpus_model")))
