"""Self-test of the conformance runner's checks: each must reject a wrong answer, or the
runner could pass a gateway it should fail."""
import json
import os
import struct
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import run_cases as rc  # noqa: E402

from tensorflow_serving.apis import classification_pb2, predict_pb2  # noqa: E402


def cases():
    shared = os.environ.get("TG_SHARED_DIR", os.path.join(HERE, "..", "..", "..", "shared"))
    with open(os.path.join(shared, "spec", "tfs_rest_cases.public.json")) as f:
        return {c["id"]: c for c in json.load(f)}


class TestChecks(unittest.TestCase):
    C = cases()

    def predict(self, values, shape, content=False, dtype=1):
        r = predict_pb2.PredictRequest()
        r.model_spec.name = "half_plus_two"
        t = r.inputs["x"]
        t.dtype = dtype
        for d in shape:
            t.tensor_shape.dim.add().size = d
        if content:
            t.tensor_content = struct.pack("<%df" % len(values), *values)
        else:
            t.float_val.extend(values)
        return r

    def test_tensors(self):
        exp = self.C["row-basic-float-list"]["expect"]["tensors"]
        rc.check_tensors(exp, self.predict([1, 2, 5], [3]))
        rc.check_tensors(exp, self.predict([1, 2, 5], [3], content=True))
        for bad in (self.predict([1, 2, 6], [3]), self.predict([1, 2, 5], [3, 1]),
                    self.predict([1, 2], [3]), self.predict([1, 2, 5], [3], dtype=2)):
            with self.assertRaises(rc.CaseFailure):
                rc.check_tensors(exp, bad)

    def test_negative_zero_and_nan(self):
        self.assertTrue(rc.same_value("DT_FLOAT", "-0.0", -0.0))
        self.assertFalse(rc.same_value("DT_FLOAT", "-0.0", 0.0))
        self.assertFalse(rc.same_value("DT_FLOAT", 0.0, -0.0))
        self.assertTrue(rc.same_value("DT_FLOAT", "NaN", float("nan")))
        self.assertFalse(rc.same_value("DT_INT64", "9007199254740993", 9007199254740992))

    def test_model_spec(self):
        r = predict_pb2.PredictRequest()
        r.model_spec.name = "half_plus_two"
        rc.check_model_spec({"name": "half_plus_two"}, r.model_spec)
        r.model_spec.version.value = 0  # present-but-zero is not "absent"
        with self.assertRaises(rc.CaseFailure):
            rc.check_model_spec({"name": "half_plus_two"}, r.model_spec)
        rc.check_model_spec({"name": "half_plus_two", "version": "0"}, r.model_spec)
        r.model_spec.signature_name = "serving_default"
        with self.assertRaises(rc.CaseFailure):
            rc.check_model_spec({"name": "half_plus_two", "version": "0"}, r.model_spec)

    def test_input(self):
        case = self.C["classify-with-context"]
        req = classification_pb2.ClassificationRequest()
        c = req.input.example_list_with_context
        c.context.features.feature["q"].bytes_list.value.append(b"pizza")
        ex = c.examples.add()
        ex.features.feature["x"].float_list.value.append(20.0)
        ex.features.feature["n"].int64_list.value.extend([1, 1])
        ex.features.feature["s"].bytes_list.value.append(b"hi")
        rc.check_input(case["expect"]["input"], req.input)
        ex.features.feature["n"].int64_list.value[1] = 0
        with self.assertRaises(rc.CaseFailure):
            rc.check_input(case["expect"]["input"], req.input)

    def test_response(self):
        exp = self.C["out-row-single"]["expect"]
        rc.check_response(exp, 200, exp["response_text"].encode())
        with self.assertRaises(rc.CaseFailure):
            rc.check_response(exp, 200, b'{"predictions": [2.5, 3.0, 4.5]}')  # same JSON, other text
        with self.assertRaises(rc.CaseFailure):
            rc.check_response(exp, 400, exp["response_text"].encode())
        err = self.C["url-uppercase-verb"]["expect"]
        rc.check_response(err, 400, json.dumps({"error": err["error_exact"]}).encode())
        with self.assertRaises(rc.CaseFailure):
            rc.check_response(err, 400, json.dumps({"error": "Malformed request"}).encode())

    def test_backend_requires_a_call(self):
        with self.assertRaises(rc.CaseFailure):
            rc.check_backend(self.C["row-basic-float-list"], [])


if __name__ == "__main__":
    unittest.main(verbosity=2)
