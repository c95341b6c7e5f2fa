"""Wire compatibility of proto/ both ways: protobuf-c (tests/tools/proto_wire.c) against an
independent implementation, Debian's python3-protobuf compiling the same .proto files.
"""
import math
import os
import struct
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import harness  # noqa: E402

from tensorflow.core.example import example_pb2  # noqa: E402
from tensorflow.core.framework import tensor_pb2, types_pb2  # noqa: E402
from tensorflow.core.protobuf import meta_graph_pb2  # noqa: E402
from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2,  # noqa: E402
                                     get_model_status_pb2, inference_pb2, predict_pb2,
                                     regression_pb2)


def c_tool(*args, data=b""):
    p = subprocess.run([harness.binary("proto_wire")] + list(args), input=data,
                       capture_output=True, timeout=30)
    return p.returncode, p.stdout


class TestPythonToC(unittest.TestCase):
    """Messages built in Python survive a protobuf-c unpack and pack unchanged."""

    def roundtrip(self, msg):
        code, out = c_tool("roundtrip", msg.DESCRIPTOR.full_name, data=msg.SerializeToString())
        self.assertEqual(code, 0, "protobuf-c could not parse %s" % msg.DESCRIPTOR.full_name)
        back = type(msg).FromString(out)
        # compared as deterministic (map-sorted) bytes: == would fail on NaN != NaN
        self.assertEqual(back.SerializeToString(deterministic=True),
                         msg.SerializeToString(deterministic=True))
        # same size; bytes may differ only in map entry order
        self.assertEqual(len(out), msg.ByteSize())
        return back

    def test_predict_request_every_tensor_field(self):
        r = predict_pb2.PredictRequest()
        r.model_spec.name = "half_plus_two"
        r.model_spec.version.value = 0  # present-but-zero must survive
        r.model_spec.signature_name = "serving_default"
        r.output_filter.extend(["y", "z"])
        t = r.inputs["f"]
        t.dtype = types_pb2.DT_FLOAT
        t.tensor_shape.dim.add(size=2, name="batch")
        t.float_val.extend([float("nan"), -0.0])
        r.inputs["d"].double_val.extend([1e300, 2 ** -1074])
        r.inputs["i"].int_val.extend([-(2 ** 31), 2 ** 31 - 1])
        r.inputs["l"].int64_val.extend([-(2 ** 63), 2 ** 63 - 1, 2 ** 53 + 1])
        r.inputs["u"].uint32_val.append(2 ** 32 - 1)
        r.inputs["v"].uint64_val.append(2 ** 64 - 1)
        r.inputs["b"].bool_val.extend([True, False, True])
        r.inputs["s"].string_val.extend([b"\xff\x00\xfe", b"", "é".encode()])
        r.inputs["h"].half_val.extend([0x3C00, 0xFFFF])
        r.inputs["c"].scomplex_val.extend([1.0, -1.0])
        r.inputs["z"].dcomplex_val.extend([0.5, 0.25])
        r.inputs["t"].tensor_content = struct.pack("<3f", 1, 2, 3)
        r.inputs["t"].tensor_shape.unknown_rank = True
        r.inputs["r"].resource_handle_val.add(device="/cpu:0", hash_code=7)
        r.inputs["w"].variant_val.add(type_name="T").tensors.add(dtype=types_pb2.DT_INT32)
        back = self.roundtrip(r)
        self.assertTrue(back.model_spec.HasField("version"))
        self.assertTrue(math.isnan(back.inputs["f"].float_val[0]))
        self.assertEqual(struct.pack("<f", back.inputs["f"].float_val[1]), struct.pack("<f", -0.0))

    def test_predict_request_label_and_unpacked_encoding(self):
        r = predict_pb2.PredictRequest()
        r.model_spec.name = "m"
        r.model_spec.version_label = "canary"
        self.roundtrip(r)
        # proto3 parsers must accept unpacked repeated scalars too: float_val as 2 separate
        # fixed32 fields (tag 5, wire type 5) inside a TensorProto
        tensor = bytes([0x08, 0x01]) + b"\x2d" + struct.pack("<f", 1.5) + b"\x2d" + struct.pack("<f", 2.5)
        code, out = c_tool("roundtrip", "tensorflow.TensorProto", data=tensor)
        self.assertEqual(code, 0)
        self.assertEqual(list(tensor_pb2.TensorProto.FromString(out).float_val), [1.5, 2.5])

    def test_predict_response(self):
        r = predict_pb2.PredictResponse()
        r.outputs["y"].dtype = types_pb2.DT_FLOAT
        r.outputs["y"].float_val.extend([2.5, 3.0])
        r.model_spec.name = "m"
        r.model_spec.version.value = 124
        self.roundtrip(r)

    def test_metadata_and_signature_def(self):
        sm = get_model_metadata_pb2.SignatureDefMap()
        sd = sm.signature_def["serving_default"]
        sd.method_name = "tensorflow/serving/predict"
        sd.inputs["x"].name = "x:0"
        sd.inputs["x"].dtype = types_pb2.DT_FLOAT
        sd.inputs["x"].tensor_shape.dim.add(size=-1)
        sd.inputs["sp"].coo_sparse.values_tensor_name = "v:0"
        sd.outputs["y"].name = "y:0"
        sd.defaults["x"].float_val.append(0.0)
        self.roundtrip(sm)
        resp = get_model_metadata_pb2.GetModelMetadataResponse()
        resp.model_spec.name = "m"
        resp.metadata["signature_def"].Pack(sm)
        back = self.roundtrip(resp)
        out = get_model_metadata_pb2.SignatureDefMap()
        self.assertTrue(back.metadata["signature_def"].Unpack(out))
        self.assertEqual(out, sm)
        req = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        req.model_spec.name = "m"
        self.roundtrip(req)

    def test_status(self):
        r = get_model_status_pb2.GetModelStatusResponse()
        s = r.model_version_status.add(version=124, state=get_model_status_pb2.ModelVersionStatus.LOADING)
        s.status.error_code = 14
        s.status.error_message = "loading"
        self.roundtrip(r)

    def test_classify_regress_multi(self):
        req = classification_pb2.ClassificationRequest()
        req.model_spec.name = "m"
        ctx = req.input.example_list_with_context
        ctx.context.features.feature["q"].bytes_list.value.append(b"pizza")
        ex = ctx.examples.add()
        ex.features.feature["x"].float_list.value.append(20.0)
        ex.features.feature["n"].int64_list.value.extend([1, -(2 ** 63)])
        ex.features.feature["e"].SetInParent()  # a Feature with no kind set
        self.roundtrip(req)
        resp = classification_pb2.ClassificationResponse()
        resp.result.classifications.add().classes.add(label="", score=12.0)
        self.roundtrip(resp)
        rr = regression_pb2.RegressionResponse()
        rr.result.regressions.add(value=3.5)
        self.roundtrip(rr)
        mi = inference_pb2.MultiInferenceRequest()
        mi.tasks.add(method_name="tensorflow/serving/regress").model_spec.name = "m"
        mi.input.example_list.examples.add()
        self.roundtrip(mi)
        self.roundtrip(example_pb2.Example())

    def test_garbage_is_refused(self):
        code, _ = c_tool("roundtrip", "tensorflow.serving.PredictRequest", data=b"\xff\xff\xff")
        self.assertEqual(code, 3)


class TestCToPython(unittest.TestCase):
    """Messages built field by field in C parse in Python to the intended values."""

    def test_predict_request(self):
        code, out = c_tool("sample", "predict_request")
        self.assertEqual(code, 0)
        r = predict_pb2.PredictRequest.FromString(out)
        self.assertEqual(r.model_spec.name, "m")
        self.assertEqual(r.model_spec.WhichOneof("version_choice"), "version")
        self.assertEqual(r.model_spec.version.value, 0)
        self.assertIn(b"\x12\x00", r.model_spec.SerializeToString())
        self.assertEqual(r.model_spec.signature_name, "sig")
        a = r.inputs["a"]
        self.assertEqual(a.dtype, types_pb2.DT_FLOAT)
        self.assertEqual([d.size for d in a.tensor_shape.dim], [3])
        self.assertEqual(struct.pack("<3f", *a.float_val), struct.pack("<3f", 0.1, -0.0, 3.0))
        b = r.inputs["b"]
        self.assertEqual(b.dtype, types_pb2.DT_INT64)
        self.assertEqual(struct.unpack("<2q", b.tensor_content), (2 ** 53 + 1, -1))
        self.assertEqual(list(r.output_filter), ["y"])

    def test_metadata_response(self):
        code, out = c_tool("sample", "metadata_response")
        self.assertEqual(code, 0)
        resp = get_model_metadata_pb2.GetModelMetadataResponse.FromString(out)
        self.assertEqual(resp.model_spec.version.value, 123)
        sm = get_model_metadata_pb2.SignatureDefMap()
        self.assertTrue(resp.metadata["signature_def"].Unpack(sm))
        ti = sm.signature_def["classify_x_to_y"].inputs["inputs"]
        self.assertEqual(ti.name, "tf_example:0")
        self.assertEqual(ti.dtype, types_pb2.DT_STRING)
        self.assertTrue(ti.tensor_shape.unknown_rank)
        self.assertIsInstance(ti, meta_graph_pb2.TensorInfo)


if __name__ == "__main__":
    unittest.main(verbosity=2)
