"""tfs-sim over the wire, with Debian's python3-grpcio and stubs built from our own .proto files.

These pin the TF Serving behaviour that every later gateway test relies on
(spec/tfserving.md §2, §4, §6).
"""
import json
import os
import signal
import struct
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import harness  # noqa: E402

import grpc  # noqa: E402
from tensorflow.core.framework import tensor_pb2, types_pb2  # noqa: E402
from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2,  # noqa: E402
                                     get_model_status_pb2, inference_pb2, model_service_pb2_grpc,
                                     predict_pb2, prediction_service_pb2_grpc, regression_pb2)


def float_tensor(values, shape=None, content=False):
    t = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT)
    for d in (shape if shape is not None else [len(values)]):
        t.tensor_shape.dim.add().size = d
    if content:
        t.tensor_content = struct.pack("<%df" % len(values), *values)
    else:
        t.float_val.extend(values)
    return t


def predict_req(model="half_plus_two", x=(1.0, 2.0, 5.0), version=None, label=None, sig=None, **kw):
    r = predict_pb2.PredictRequest()
    r.model_spec.name = model
    if version is not None:
        r.model_spec.version.value = version
    if label is not None:
        r.model_spec.version_label = label
    if sig is not None:
        r.model_spec.signature_name = sig
    if x is not None:
        r.inputs["x"].CopyFrom(float_tensor(list(x), **kw))
    return r


class SimTestCase(unittest.TestCase):
    sim_args = ()

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.sim = harness.Sim(*cls.extra_args(cls.tmp.name))
        cls.ch = cls.sim.channel()
        cls.ps = prediction_service_pb2_grpc.PredictionServiceStub(cls.ch)
        cls.ms = model_service_pb2_grpc.ModelServiceStub(cls.ch)

    @classmethod
    def extra_args(cls, tmpdir):
        return list(cls.sim_args)

    @classmethod
    def tearDownClass(cls):
        cls.ch.close()
        code = cls.sim.stop()
        cls.tmp.cleanup()
        # a clean SIGTERM shutdown is part of the contract
        assert code == 0, "tfs-sim exited with %s: %s" % (code, cls.sim.stderr())

    def assertRpcError(self, fn, req, code, details):
        with self.assertRaises(grpc.RpcError) as cm:
            fn(req, timeout=10)
        self.assertEqual(cm.exception.code(), code, cm.exception.details())
        self.assertEqual(cm.exception.details(), details)


class TestBuiltinModels(SimTestCase):
    def test_predict_half_plus_two(self):
        resp = self.ps.Predict(predict_req(), timeout=10)
        y = resp.outputs["y"]
        self.assertEqual(list(y.float_val), [2.5, 3.0, 4.5])
        self.assertEqual([d.size for d in y.tensor_shape.dim], [3])
        self.assertEqual(y.dtype, types_pb2.DT_FLOAT)
        self.assertEqual(resp.model_spec.name, "half_plus_two")
        self.assertEqual(resp.model_spec.version.value, 124)  # Latest = highest version
        self.assertEqual(resp.model_spec.signature_name, "serving_default")

    def test_predict_tensor_content_input_and_shape_copied(self):
        resp = self.ps.Predict(predict_req(x=[1, 2, 3, 4], shape=[2, 2], content=True), timeout=10)
        self.assertEqual(list(resp.outputs["y"].float_val), [2.5, 3.0, 3.5, 4.0])
        self.assertEqual([d.size for d in resp.outputs["y"].tensor_shape.dim], [2, 2])

    def test_fill_rule_repeats_last_value(self):
        resp = self.ps.Predict(predict_req(x=[1.0, 3.0], shape=[4]), timeout=10)
        self.assertEqual(list(resp.outputs["y"].float_val), [2.5, 3.5, 3.5, 3.5])

    def test_float32_arithmetic(self):
        # fl(fl(0.5*x)+2) in float32: 1e8+1 is not representable, 0.1 rounds
        resp = self.ps.Predict(predict_req(x=[0.1, 16777217.0]), timeout=10)
        f32 = lambda v: struct.unpack("<f", struct.pack("<f", v))[0]
        self.assertEqual(list(resp.outputs["y"].float_val),
                         [f32(f32(0.5 * f32(0.1)) + 2.0), f32(f32(0.5 * f32(16777217.0)) + 2.0)])

    def test_version_and_label(self):
        self.assertEqual(self.ps.Predict(predict_req(version=123), timeout=10).model_spec.version.value, 123)
        self.assertEqual(self.ps.Predict(predict_req(label="stable"), timeout=10).model_spec.version.value, 123)
        self.assertEqual(self.ps.Predict(predict_req(label="canary"), timeout=10).model_spec.version.value, 124)

    def test_half_plus_three(self):
        resp = self.ps.Predict(predict_req(model="half_plus_three"), timeout=10)
        self.assertEqual(list(resp.outputs["y"].float_val), [3.5, 4.0, 5.5])

    def test_classify(self):
        req = classification_pb2.ClassificationRequest()
        req.model_spec.name = "half_plus_two"
        req.model_spec.signature_name = "classify_x_to_y"
        req.input.example_list.examples.add().features.feature["x"].float_list.value.append(20.0)
        resp = self.ps.Classify(req, timeout=10)
        self.assertEqual(len(resp.result.classifications), 1)
        cls = resp.result.classifications[0].classes
        self.assertEqual([(c.label, c.score) for c in cls], [("", 12.0)])
        self.assertEqual(resp.model_spec.signature_name, "classify_x_to_y")

    def test_classify_with_context(self):
        req = classification_pb2.ClassificationRequest()
        req.model_spec.name = "half_plus_two"
        req.model_spec.signature_name = "classify_x_to_y"
        req.input.example_list_with_context.context.features.feature["x"].float_list.value.append(4.0)
        req.input.example_list_with_context.examples.add()
        resp = self.ps.Classify(req, timeout=10)
        self.assertEqual(resp.result.classifications[0].classes[0].score, 4.0)

    def test_regress(self):
        req = regression_pb2.RegressionRequest()
        req.model_spec.name = "half_plus_two"
        req.model_spec.signature_name = "regress_x_to_y"
        req.input.example_list.examples.add().features.feature["x"].float_list.value.append(80.0)
        self.assertEqual([r.value for r in self.ps.Regress(req, timeout=10).result.regressions], [42.0])
        req.model_spec.signature_name = "regress_x2_to_y3"  # x2 defaults to 0.0: 0.5*0+3
        self.assertEqual([r.value for r in self.ps.Regress(req, timeout=10).result.regressions], [3.0])

    def test_regress_half_plus_three_doc_example(self):
        req = regression_pb2.RegressionRequest()
        req.model_spec.name = "half_plus_three"
        req.model_spec.signature_name = "tensorflow/serving/regress"
        for v in (1.0, 2.0):
            req.input.example_list.examples.add().features.feature["x"].float_list.value.append(v)
        self.assertEqual([r.value for r in self.ps.Regress(req, timeout=10).result.regressions], [3.5, 4.0])

    def test_metadata(self):
        req = get_model_metadata_pb2.GetModelMetadataRequest()
        req.model_spec.name = "half_plus_two"
        req.model_spec.version.value = 123
        req.metadata_field.append("signature_def")
        resp = self.ps.GetModelMetadata(req, timeout=10)
        self.assertEqual(resp.model_spec.name, "half_plus_two")
        self.assertEqual(resp.model_spec.version.value, 123)
        self.assertEqual(resp.model_spec.signature_name, "")
        anyv = resp.metadata["signature_def"]
        self.assertEqual(anyv.type_url, "type.googleapis.com/tensorflow.serving.SignatureDefMap")
        sm = get_model_metadata_pb2.SignatureDefMap()
        self.assertTrue(anyv.Unpack(sm))
        self.assertEqual(sorted(sm.signature_def), sorted([
            "serving_default", "classify_x_to_y", "classify_x2_to_y3", "regress_x_to_y",
            "regress_x_to_y2", "regress_x2_to_y3"]))
        sd = sm.signature_def["serving_default"]
        self.assertEqual(sd.method_name, "tensorflow/serving/predict")
        self.assertEqual(sd.inputs["x"].name, "x:0")
        self.assertEqual(sd.inputs["x"].dtype, types_pb2.DT_FLOAT)
        self.assertEqual([d.size for d in sd.inputs["x"].tensor_shape.dim], [-1, 1])
        self.assertTrue(sm.signature_def["classify_x_to_y"].inputs["inputs"].tensor_shape.unknown_rank)

    def test_metadata_half_plus_three_has_no_shape(self):
        req = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        req.model_spec.name = "half_plus_three"
        sm = get_model_metadata_pb2.SignatureDefMap()
        self.ps.GetModelMetadata(req, timeout=10).metadata["signature_def"].Unpack(sm)
        self.assertFalse(sm.signature_def["serving_default"].inputs["x"].HasField("tensor_shape"))

    def test_status(self):
        req = get_model_status_pb2.GetModelStatusRequest()
        req.model_spec.name = "half_plus_two"
        resp = self.ms.GetModelStatus(req, timeout=10)
        self.assertEqual([(s.version, s.state) for s in resp.model_version_status],
                         [(124, 30), (123, 30)])
        self.assertEqual(resp.model_version_status[0].status.error_code, 0)
        req.model_spec.version.value = 123
        self.assertEqual([s.version for s in self.ms.GetModelStatus(req, timeout=10).model_version_status], [123])
        # a label is ignored by GetModelStatus (spec §2.7)
        req.model_spec.version_label = "stable"
        self.assertEqual(len(self.ms.GetModelStatus(req, timeout=10).model_version_status), 2)

    def test_multi_inference_unimplemented(self):
        req = inference_pb2.MultiInferenceRequest()
        with self.assertRaises(grpc.RpcError) as cm:
            self.ps.MultiInference(req, timeout=10)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.UNIMPLEMENTED)


class TestErrors(SimTestCase):
    """TF Serving's codes and texts (spec/tfserving.md §4)."""

    def test_servable_lookup(self):
        P = self.ps.Predict
        self.assertRpcError(P, predict_req(model="nosuch"), grpc.StatusCode.NOT_FOUND,
                            "Servable not found for request: Latest(nosuch)")
        self.assertRpcError(P, predict_req(version=7), grpc.StatusCode.NOT_FOUND,
                            "Servable not found for request: Specific(half_plus_two, 7)")
        self.assertRpcError(P, predict_req(version=0), grpc.StatusCode.NOT_FOUND,
                            "Servable not found for request: Specific(half_plus_two, 0)")
        self.assertRpcError(P, predict_req(label="nope"), grpc.StatusCode.INVALID_ARGUMENT,
                            "Unrecognized servable version label: nope")
        self.assertRpcError(P, predict_req(model=""), grpc.StatusCode.INVALID_ARGUMENT,
                            "ModelSpec has no name specified.")
        self.assertRpcError(P, predict_pb2.PredictRequest(), grpc.StatusCode.INVALID_ARGUMENT,
                            "Missing ModelSpec")

    def test_signature_not_found(self):
        self.assertRpcError(self.ps.Predict, predict_req(sig="nope"), grpc.StatusCode.FAILED_PRECONDITION,
                            'Serving signature key "nope" not found.')

    def test_input_mismatch(self):
        r = predict_req()
        r.inputs["z"].CopyFrom(float_tensor([1.0]))
        self.assertRpcError(self.ps.Predict, r, grpc.StatusCode.INVALID_ARGUMENT,
                            "input size does not match signature: 2!=1 len({x,z}) != len({x}). "
                            "Sent extra: {z}. Missing but required: {}.")
        r = predict_req(x=None)
        r.inputs["z"].CopyFrom(float_tensor([1.0]))
        self.assertRpcError(self.ps.Predict, r, grpc.StatusCode.INVALID_ARGUMENT,
                            "Signature input alias: x(feed name: x:0) not found in request and no "
                            "default value provided. Inputs expected to be in the request {z}, or "
                            "default input alias set: {}")
        self.assertRpcError(self.ps.Predict, predict_req(x=None), grpc.StatusCode.INVALID_ARGUMENT,
                            "input size does not match signature: 0!=1 len({}) != len({x}). "
                            "Sent extra: {}. Missing but required: {x}.")

    def test_wrong_dtype(self):
        r = predict_req(x=None)
        t = r.inputs["x"]
        t.dtype = types_pb2.DT_STRING
        t.tensor_shape.dim.add().size = 1
        t.string_val.append(b"abc")
        self.assertRpcError(self.ps.Predict, r, grpc.StatusCode.INVALID_ARGUMENT,
                            "Expects arg[0] to be float but string is provided")

    def test_tensor_parsing_errors(self):
        bad = []
        r = predict_req(x=[1.0, 2.0], shape=[3], content=True)  # content size mismatch
        bad.append(r)
        r = predict_req(x=[1.0])
        r.inputs["x"].tensor_shape.dim[0].size = -1  # negative dim
        bad.append(r)
        r = predict_req(x=[1.0])
        r.inputs["x"].dtype = types_pb2.DT_INVALID
        bad.append(r)
        r = predict_req(x=[1.0])
        r.inputs["x"].tensor_shape.dim[0].size = 1 << 40  # claims 4 TB
        bad.append(r)
        for r in bad:
            self.assertRpcError(self.ps.Predict, r, grpc.StatusCode.INVALID_ARGUMENT,
                                "tensor parsing error: x")

    def test_output_filter(self):
        r = predict_req()
        r.output_filter.append("nope")
        self.assertRpcError(self.ps.Predict, r, grpc.StatusCode.INVALID_ARGUMENT,
                            "output tensor alias not found in signature: nope Outputs expected to be "
                            "in the set {y}.")
        r = predict_req()
        r.output_filter.extend(["y", "y"])
        self.assertRpcError(self.ps.Predict, r, grpc.StatusCode.INVALID_ARGUMENT,
                            "duplicate output tensor alias: y")

    def test_metadata_errors(self):
        M = self.ps.GetModelMetadata
        req = get_model_metadata_pb2.GetModelMetadataRequest()
        req.model_spec.name = "half_plus_two"
        self.assertRpcError(M, req, grpc.StatusCode.INVALID_ARGUMENT,
                            "GetModelMetadataRequest must specify at least one metadata_field")
        req.metadata_field.append("signature_defs")
        self.assertRpcError(M, req, grpc.StatusCode.INVALID_ARGUMENT,
                            "Metadata field signature_defs is not supported")
        self.assertRpcError(M, get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"]),
                            grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec")
        req = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        req.model_spec.name = "nosuch"
        self.assertRpcError(M, req, grpc.StatusCode.NOT_FOUND, "Servable not found for request: Latest(nosuch)")

    def test_status_errors(self):
        S = self.ms.GetModelStatus
        req = get_model_status_pb2.GetModelStatusRequest()
        self.assertRpcError(S, req, grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec")
        req.model_spec.name = "nosuch"
        self.assertRpcError(S, req, grpc.StatusCode.NOT_FOUND, "Could not find any versions of model nosuch")
        req.model_spec.name = "half_plus_two"
        req.model_spec.version.value = 5
        self.assertRpcError(S, req, grpc.StatusCode.NOT_FOUND, "Could not find version 5 of model half_plus_two")

    def test_classify_errors(self):
        req = classification_pb2.ClassificationRequest()
        req.model_spec.name = "half_plus_two"
        req.model_spec.signature_name = "classify_x_to_y"
        self.assertRpcError(self.ps.Classify, req, grpc.StatusCode.INVALID_ARGUMENT, "Input is empty.")
        req.input.example_list.examples.add().features.feature["y"].float_list.value.append(1.0)
        self.assertRpcError(self.ps.Classify, req, grpc.StatusCode.INVALID_ARGUMENT,
                            "Name: <unknown>, Feature: x (data type: float) is required but could not be found.")
        req.model_spec.signature_name = "nope"
        self.assertRpcError(self.ps.Classify, req, grpc.StatusCode.INVALID_ARGUMENT,
                            "No signature was found with the name: nope")

    def test_garbage_and_bad_utf8(self):
        raw = self.ch.unary_unary("/tensorflow.serving.PredictionService/Predict")
        for body in (b"\xff\xff\xff\xff", b"\x0a\xff", b"\x12\x05abc", os.urandom(4096)):
            with self.assertRaises(grpc.RpcError) as cm:
                raw(body, timeout=10)
            self.assertIn(cm.exception.code(), (grpc.StatusCode.INTERNAL, grpc.StatusCode.INVALID_ARGUMENT,
                                                grpc.StatusCode.NOT_FOUND))
        # a model name that is not UTF-8 fails to parse in C++ protobuf
        spec = b"\x0a\x02\xc3\x28"  # ModelSpec.name = invalid UTF-8
        with self.assertRaises(grpc.RpcError) as cm:
            raw(b"\x0a" + bytes([len(spec)]) + spec, timeout=10)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.INTERNAL)
        for method in ("Classify", "Regress", "GetModelMetadata"):
            with self.assertRaises(grpc.RpcError) as cm:
                self.ch.unary_unary("/tensorflow.serving.PredictionService/" + method)(b"\xff\xff", timeout=10)
            self.assertEqual(cm.exception.code(), grpc.StatusCode.INTERNAL)
        self.assertTrue(self.sim.alive())

    def test_unknown_method(self):
        with self.assertRaises(grpc.RpcError) as cm:
            self.ch.unary_unary("/tensorflow.serving.PredictionService/Nope")(b"", timeout=10)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.UNIMPLEMENTED)

    def test_large_message_beyond_4mb(self):
        n = 2 * 1024 * 1024  # 8 MB of floats: past gRPC's 4 MB default, under TF Serving's 2 GB
        resp = self.ps.Predict(predict_req(x=[1.0] * n, content=True), timeout=60)
        y = resp.outputs["y"]
        self.assertEqual(len(y.float_val), n)
        self.assertEqual(y.float_val[n - 1], 2.5)


class TestModelFile(SimTestCase):
    """Models from --models: any signature, any dtype, identity and fixed behaviours."""

    DTYPES = {
        "DT_FLOAT": ("float_val", [1.5, -0.0]),
        "DT_DOUBLE": ("double_val", [0.1, 1e300]),
        "DT_INT32": ("int_val", [-7, 2147483647]),
        "DT_INT8": ("int_val", [-128, 127]),
        "DT_UINT8": ("int_val", [0, 255]),
        "DT_INT16": ("int_val", [-32768, 7]),
        "DT_UINT16": ("int_val", [65535, 1]),
        "DT_INT64": ("int64_val", [-(2 ** 63), 2 ** 53 + 1]),
        "DT_UINT32": ("uint32_val", [4294967295, 0]),
        "DT_UINT64": ("uint64_val", [2 ** 64 - 1, 3]),
        "DT_BOOL": ("bool_val", [True, False]),
        "DT_STRING": ("string_val", [b"\x00\xffbytes", b"text"]),
        "DT_HALF": ("half_val", [0x3C00, 0xBC00]),
        "DT_BFLOAT16": ("half_val", [0x3F80, 0]),
        "DT_COMPLEX64": ("scomplex_val", [1.0, 2.0, 3.0, 4.0]),
    }

    @classmethod
    def extra_args(cls, tmpdir):
        models = {"models": [
            {"name": "echo", "versions": [1, {"version": 2, "state": "LOADING"}],
             "behavior": {"type": "identity"},
             "signatures": {"serving_default": {
                 "inputs": {k.lower(): {"dtype": k, "shape": [-1]} for k in cls.DTYPES},
                 "outputs": {k.lower(): {"dtype": k, "shape": [-1]} for k in cls.DTYPES}}}},
            {"name": "tf2", "versions": [1], "signatures": {"serving_default": {
                "inputs": {"x": {"dtype": "DT_FLOAT", "shape": [1]}},
                "outputs": {"y": {"dtype": "DT_FLOAT", "shape": [1]}},
                "defaults": {"x": {"dtype": "DT_FLOAT", "shape": [1], "values": [0.0]}}}}},
            {"name": "fixed", "versions": [7], "signatures": {"serving_default": {
                "inputs": {"x": {"dtype": "DT_FLOAT", "shape": [-1]}},
                "outputs": {"y": {"dtype": "DT_FLOAT", "shape": [-1]}}}},
             "responses": {"predict": {"outputs": {
                 "y": {"dtype": "DT_FLOAT", "shape": [3], "float_val": [7.0]},
                 "z": {"dtype": "DT_FLOAT", "shape": [2], "tensor_content_hex": "0000204000004040"}}},
                 "regress": {"regressions": [1.5]}}},
            {"name": "broken", "signatures": {"serving_default": {"inputs": {}, "outputs": {}}},
             "responses": {"error": {"code": "RESOURCE_EXHAUSTED", "message": "out of GPU memory"}}},
            {"name": "half_plus_two", "versions": [5], "behavior": {"type": "affine", "a": 2.0, "b": 1.0},
             "signatures": {"serving_default": {"inputs": {"x": {"dtype": "DT_FLOAT", "shape": [-1]}},
                                                "outputs": {"y": {"dtype": "DT_FLOAT"}}}}},
        ]}
        return ["--models", harness.write_json(tmpdir, "models.json", models)]

    def test_identity_every_dtype(self):
        req = predict_pb2.PredictRequest()
        req.model_spec.name = "echo"
        for dt, (field, vals) in self.DTYPES.items():
            t = req.inputs[dt.lower()]
            t.dtype = types_pb2.DataType.Value(dt)
            t.tensor_shape.dim.add().size = 2
            getattr(t, field).extend(vals)
        resp = self.ps.Predict(req, timeout=10)
        self.assertEqual(resp.model_spec.version.value, 1)  # version 2 is LOADING
        for dt, (field, vals) in self.DTYPES.items():
            out = resp.outputs[dt.lower()]
            self.assertEqual(out.dtype, types_pb2.DataType.Value(dt), dt)
            got = list(getattr(out, field))
            if dt == "DT_FLOAT":
                self.assertEqual(struct.pack("<2f", *got), struct.pack("<2f", *vals))  # keeps -0.0
            else:
                self.assertEqual(got, vals, dt)

    def test_narrow_ints_truncate_as_tf(self):
        req = predict_pb2.PredictRequest()
        req.model_spec.name = "echo"
        for dt in self.DTYPES:
            field, vals = self.DTYPES[dt]
            t = req.inputs[dt.lower()]
            t.dtype = types_pb2.DataType.Value(dt)
            t.tensor_shape.dim.add().size = 2
            getattr(t, field).extend(vals)
        req.inputs["dt_uint8"].ClearField("int_val")
        req.inputs["dt_uint8"].int_val.extend([300, -1])  # TF truncates: 44, 255
        resp = self.ps.Predict(req, timeout=10)
        self.assertEqual(list(resp.outputs["dt_uint8"].int_val), [44, 255])

    def test_loading_version_is_not_served(self):
        r = predict_req(model="echo", x=None, version=2)
        self.assertRpcError(self.ps.Predict, r, grpc.StatusCode.NOT_FOUND,
                            "Servable not found for request: Specific(echo, 2)")
        st = get_model_status_pb2.GetModelStatusRequest()
        st.model_spec.name = "echo"
        resp = self.ms.GetModelStatus(st, timeout=10)
        self.assertEqual([(s.version, s.state) for s in resp.model_version_status], [(2, 20), (1, 30)])

    def test_signature_defaults(self):
        r = predict_req(model="tf2", x=None)
        self.assertEqual(list(self.ps.Predict(r, timeout=10).outputs["y"].float_val), [2.0])

    def test_fixed_responses(self):
        resp = self.ps.Predict(predict_req(model="fixed"), timeout=10)
        self.assertEqual(list(resp.outputs["y"].float_val), [7.0])  # raw form kept as given
        self.assertEqual(resp.outputs["z"].tensor_content, bytes.fromhex("0000204000004040"))
        self.assertEqual(resp.model_spec.version.value, 7)
        req = regression_pb2.RegressionRequest()
        req.model_spec.name = "fixed"
        req.input.example_list.examples.add().features.feature["x"].float_list.value.append(1.0)
        self.assertEqual([r.value for r in self.ps.Regress(req, timeout=10).result.regressions], [1.5])

    def test_forced_error_for_every_method(self):
        self.assertRpcError(self.ps.Predict, predict_req(model="broken"), grpc.StatusCode.RESOURCE_EXHAUSTED,
                            "out of GPU memory")
        st = get_model_status_pb2.GetModelStatusRequest()
        st.model_spec.name = "broken"
        self.assertRpcError(self.ms.GetModelStatus, st, grpc.StatusCode.RESOURCE_EXHAUSTED, "out of GPU memory")

    def test_file_model_replaces_builtin(self):
        resp = self.ps.Predict(predict_req(x=[1.0, 2.0]), timeout=10)
        self.assertEqual(list(resp.outputs["y"].float_val), [3.0, 5.0])
        self.assertEqual(resp.model_spec.version.value, 5)


class TestModelFileErrors(unittest.TestCase):
    def run_bad(self, doc, expect):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "m.json")
            with open(path, "w") as f:
                f.write(doc if isinstance(doc, str) else json.dumps(doc))
            with self.assertRaises(harness.StartError) as cm:
                harness.Sim("--models", path)
            self.assertIn(expect, str(cm.exception))

    def test_unknown_key_is_named(self):
        self.run_bad({"models": [{"name": "m", "signatures": {"s": {"inputs": {"x": {"dtyp": "DT_FLOAT"}},
                                                                      "outputs": {}}}}]},
                     "models[0].signatures.s.inputs.x: unknown key 'dtyp'")

    def test_wrong_types(self):
        self.run_bad({"models": [{"name": 5, "signatures": {}}]}, "'name' must be a non-empty string")
        self.run_bad({"models": [{"name": "m", "signatures": {"s": {"inputs": {"x": {"dtype": "DT_NOPE"}},
                                                                      "outputs": {}}}}]}, "'dtype' must be")

    def test_syntax_error_has_position(self):
        self.run_bad('{"models": [\n  {"name": }]}', "m.json:2:")


class TestDeviceGpu(SimTestCase):
    """The gpu profile batches, limits concurrency and refuses when its queue is full."""
    sim_args = ("--device", "gpu", "--compute-us", "50000", "--per-item-us", "0", "--batch-window-us", "5000",
                "--max-batch", "4", "--concurrency", "1", "--queue-limit", "8")

    def test_queue_full_is_unavailable(self):
        results = []
        lock = threading.Lock()

        def one():
            try:
                self.ps.Predict(predict_req(x=[1.0]), timeout=30)
                r = "ok"
            except grpc.RpcError as e:
                r = (e.code(), e.details())
            with lock:
                results.append(r)

        self.sim.control(op="reset_stats")
        threads = [threading.Thread(target=one) for _ in range(40)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        ok = results.count("ok")
        rejected = [r for r in results if r != "ok"]
        self.assertEqual(len(results), 40)
        self.assertGreater(ok, 0)
        self.assertGreater(len(rejected), 0)
        for r in rejected:
            self.assertEqual(r, (grpc.StatusCode.UNAVAILABLE,
                                 "The batch scheduling queue to which this task was submitted is full"))
        st = self.sim.stats()
        self.assertEqual(st["device_stats"]["rejected"], len(rejected))
        self.assertEqual(st["device_stats"]["completed"], ok)
        self.assertLessEqual(st["device_stats"]["max_queue"], 8)
        self.assertLess(st["device_stats"]["batches"], ok)  # requests were batched

    def test_compute_time_applies(self):
        t0 = time.monotonic()
        self.ps.Predict(predict_req(x=[1.0]), timeout=30)
        self.assertGreaterEqual(time.monotonic() - t0, 0.050)  # one batch: 50 ms compute


class TestRecordAndTensorContent(SimTestCase):
    @classmethod
    def extra_args(cls, tmpdir):
        cls.record = os.path.join(tmpdir, "calls.jsonl")
        return ["--record", cls.record, "--tensor-content"]

    def test_record_and_content_output(self):
        import base64
        resp = self.ps.Predict(predict_req(x=[1.0, 2.0]), timeout=10,
                               metadata=[("x-request-id", "abc"), ("x-bin", b"\x00\x01")])
        self.assertEqual(resp.outputs["y"].tensor_content, struct.pack("<2f", 2.5, 3.0))
        self.assertEqual(len(resp.outputs["y"].float_val), 0)
        with open(self.record) as f:
            lines = [json.loads(l) for l in f]
        last = lines[-1]
        self.assertEqual(last["method"], "/tensorflow.serving.PredictionService/Predict")
        self.assertEqual(last["metadata"]["x-request-id"], "abc")
        self.assertEqual(base64.b64decode(last["metadata"]["x-bin"]), b"\x00\x01")
        req = predict_pb2.PredictRequest.FromString(base64.b64decode(last["request_b64"]))
        self.assertEqual(list(req.inputs["x"].float_val), [1.0, 2.0])


class TestProcess(unittest.TestCase):
    def test_port_zero_prints_port_and_sigterm_exits_zero(self):
        sim = harness.Sim()
        self.assertGreater(sim.port, 0)
        self.assertFalse(harness.port_is_free(sim.port))
        self.assertEqual(sim.stop(), 0)
        self.assertTrue(harness.port_is_free(sim.port))

    def test_refuses_to_share_a_port(self):
        a = harness.Sim()
        try:
            with self.assertRaises(harness.StartError) as cm:
                harness.Sim(port=a.port)
            self.assertIn("cannot bind", str(cm.exception))
        finally:
            self.assertEqual(a.stop(), 0)

    def test_sigterm_with_calls_in_flight(self):
        sim = harness.Sim("--compute-us", "200000", "--concurrency", "1")
        ch = sim.channel()
        stub = prediction_service_pb2_grpc.PredictionServiceStub(ch)
        futures = [stub.Predict.future(predict_req(x=[1.0]), timeout=30) for _ in range(5)]
        time.sleep(0.1)
        self.assertEqual(sim.stop(grace=15), 0)
        for f in futures:
            try:
                f.result()
            except grpc.RpcError as e:  # cancelled by the shutdown: an error, never a hang
                self.assertIn(e.code(), (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE))
        ch.close()

    def test_bad_flags(self):
        import subprocess
        for args in (["--port", "70000"], ["--device", "tpu"], ["--threads", "0"], ["--nope"]):
            p = subprocess.run([harness.binary("tfs-sim")] + args, capture_output=True, timeout=10)
            self.assertEqual(p.returncode, 2, args)


if __name__ == "__main__":
    unittest.main(verbosity=2)
