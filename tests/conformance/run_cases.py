#!/usr/bin/env python3
"""REST conformance runner: replays case files in the format of spec/tfserving.md §8 against
tfgate in front of tfs-sim, and checks both what the client got and what reached the backend.

For each case:
  1. a tfs-sim model file is built from the case (model, versions, labels, signature, fixed
     backend answers) and tfs-sim is started with --record, so every backend call is kept;
  2. tfs-sim itself is checked to serve the case's signature (GetModelMetadata), or the
     case's backend error; a failure here is a tfs-sim bug and always fails the run;
  3. tfgate is started in front of it, the request is sent byte for byte over HTTP/1.1, and
     the response (status, exact text or JSON, error message) and the recorded backend calls
     (method, ModelSpec, tensors, classify/regress Input, metadata_field) are compared.

Cases listed in expected_failures.txt must fail (XFAIL); one that passes (XPASS) fails the run
until it is removed from the list, so the list can only shrink.

usage: run_cases.py [CASE_FILE ...] [-k SUBSTRING] [-v]
Default case file: $TG_SHARED_DIR/spec/tfs_rest_cases.public.json.
"""
import base64
import http.client
import json
import math
import os
import re
import struct
import sys
import tempfile
import time
import traceback
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
import harness  # noqa: E402

import grpc  # noqa: E402
from tensorflow.core.framework import types_pb2  # noqa: E402
from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2,  # noqa: E402
                                     get_model_status_pb2, predict_pb2, regression_pb2)

PREDICT = "/tensorflow.serving.PredictionService/Predict"
REQUEST_TYPES = {
    PREDICT: predict_pb2.PredictRequest,
    "/tensorflow.serving.PredictionService/Classify": classification_pb2.ClassificationRequest,
    "/tensorflow.serving.PredictionService/Regress": regression_pb2.RegressionRequest,
    "/tensorflow.serving.PredictionService/GetModelMetadata": get_model_metadata_pb2.GetModelMetadataRequest,
    "/tensorflow.serving.ModelService/GetModelStatus": get_model_status_pb2.GetModelStatusRequest,
}


class CaseFailure(Exception):
    pass


class SimBroken(Exception):
    """tfs-sim could not serve what the case declares: a bug in tfs-sim, never expected."""


def check(cond, msg):
    if not cond:
        raise CaseFailure(msg)


# ---- building the backend from a case ----

def model_name(case):
    spec = case.get("expect", {}).get("model_spec", {})
    if "name" in spec:
        return spec["name"]
    m = re.match(r"(?i)/v1/models/([^/:?]+)", case["request"]["path"])
    return urllib.parse.unquote(m.group(1)) if m else "half_plus_two"


def sim_signature(sig):
    out = {"method_name": sig.get("method_name", "tensorflow/serving/predict")}
    for part in ("inputs", "outputs"):
        out[part] = {alias: {"dtype": ti["dtype"], "shape": ti.get("shape")}
                     for alias, ti in (sig.get(part) or {}).items()}
    return out


def model_file(case):
    backend = case.get("backend", {})
    sig = case["signature"]
    model = {
        "name": model_name(case),
        "versions": backend.get("versions", [123]),
        "labels": backend.get("labels", {"stable": 123}),
        "behavior": {"type": "affine", "a": 0.5, "b": 2.0},
        "signatures": {sig["name"]: sim_signature(sig)},
    }
    br = case.get("backend_response")
    responses = {}
    if br:
        if "grpc_code" in br:
            responses["error"] = {"code": br["grpc_code"], "message": br.get("grpc_message", "")}
        if "outputs" in br:
            responses["predict"] = {"outputs": br["outputs"]}
        if "regressions" in br:
            responses["regress"] = {"regressions": br["regressions"]}
        if "classifications" in br:
            responses["classify"] = {"classifications": br["classifications"]}
        if "model_version_status" in br:
            responses["status"] = {"model_version_status": br["model_version_status"]}
        if "signature_def" in br:
            responses["metadata"] = {
                "model_spec": br.get("model_spec", {}),
                "type_url": br.get("metadata_any_type_url",
                                   "type.googleapis.com/tensorflow.serving.SignatureDefMap"),
                "signature_def": {n: sim_signature(s) for n, s in br["signature_def"].items()},
            }
    if responses:
        model["responses"] = responses
    return {"models": [model]}


def self_check(case, sim):
    """tfs-sim must serve the case's signature exactly (or the case's backend error)."""
    req = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    req.model_spec.name = model_name(case)
    br = case.get("backend_response") or {}
    with sim.channel() as ch:
        call = ch.unary_unary("/tensorflow.serving.PredictionService/GetModelMetadata",
                              request_serializer=lambda m: m.SerializeToString(),
                              response_deserializer=get_model_metadata_pb2.GetModelMetadataResponse.FromString)
        try:
            resp = call(req, timeout=10)
        except grpc.RpcError as e:
            if "grpc_code" in br and e.code().name == br["grpc_code"] and e.details() == br.get("grpc_message", ""):
                return
            raise SimBroken("GetModelMetadata failed: %s %s" % (e.code(), e.details()))
    if "grpc_code" in br:
        raise SimBroken("tfs-sim answered although the case's backend fails with %s" % br["grpc_code"])
    sm = get_model_metadata_pb2.SignatureDefMap()
    resp.metadata["signature_def"].Unpack(sm)
    sig = case["signature"]
    if "signature_def" in br:
        return  # a fixed metadata answer replaces the model's own signatures
    if sig["name"] not in sm.signature_def:
        raise SimBroken("signature %s not served" % sig["name"])
    sd = sm.signature_def[sig["name"]]
    for part in ("inputs", "outputs"):
        for alias, ti in (sig.get(part) or {}).items():
            got = getattr(sd, part)[alias]
            if types_pb2.DataType.Name(got.dtype) != ti["dtype"]:
                raise SimBroken("%s %s: dtype %s" % (part, alias, got.dtype))
            shape = ti.get("shape")
            if shape is None:
                if got.HasField("tensor_shape"):
                    raise SimBroken("%s %s: unexpected shape" % (part, alias))
            elif [d.size for d in got.tensor_shape.dim] != shape:
                raise SimBroken("%s %s: shape %s" % (part, alias, got.tensor_shape))


# ---- reading what reached the backend ----

def f32(v):
    return struct.unpack("<f", struct.pack("<f", v))[0]


CONTENT_FORMATS = {
    types_pb2.DT_FLOAT: "f", types_pb2.DT_DOUBLE: "d", types_pb2.DT_INT32: "i", types_pb2.DT_INT16: "h",
    types_pb2.DT_INT8: "b", types_pb2.DT_UINT8: "B", types_pb2.DT_UINT16: "H", types_pb2.DT_INT64: "q",
    types_pb2.DT_UINT32: "I", types_pb2.DT_UINT64: "Q", types_pb2.DT_BOOL: "?",
}
TYPED_FIELD = {
    types_pb2.DT_FLOAT: "float_val", types_pb2.DT_DOUBLE: "double_val", types_pb2.DT_INT32: "int_val",
    types_pb2.DT_INT16: "int_val", types_pb2.DT_INT8: "int_val", types_pb2.DT_UINT8: "int_val",
    types_pb2.DT_UINT16: "int_val", types_pb2.DT_INT64: "int64_val", types_pb2.DT_UINT32: "uint32_val",
    types_pb2.DT_UINT64: "uint64_val", types_pb2.DT_BOOL: "bool_val", types_pb2.DT_STRING: "string_val",
    types_pb2.DT_HALF: "half_val", types_pb2.DT_BFLOAT16: "half_val",
}


def tensor_values(t):
    """Flattened values of a TensorProto, from tensor_content or the typed field."""
    n = 1
    for d in t.tensor_shape.dim:
        n *= d.size
    if t.tensor_content:
        if t.dtype == types_pb2.DT_STRING:
            raise CaseFailure("string tensor_content is not expected from a gateway")
        fmt = CONTENT_FORMATS.get(t.dtype)
        check(fmt is not None, "tensor_content for dtype %d" % t.dtype)
        size = struct.calcsize(fmt)
        check(len(t.tensor_content) == n * size,
              "tensor_content has %d bytes for %d elements" % (len(t.tensor_content), n))
        return list(struct.unpack("<%d%s" % (n, fmt), t.tensor_content))
    field = TYPED_FIELD.get(t.dtype)
    check(field is not None, "unexpected dtype %d" % t.dtype)
    vals = list(getattr(t, field))
    check(len(vals) == n, "%s has %d values for %d elements" % (field, len(vals), n))
    return vals


def same_value(dtype, want, got):
    if dtype in ("DT_FLOAT", "DT_DOUBLE"):
        cast = f32 if dtype == "DT_FLOAT" else float
        if want == "NaN":
            return isinstance(got, float) and math.isnan(got)
        if want in ("Infinity", "-Infinity"):
            return got == (math.inf if want == "Infinity" else -math.inf)
        if want == "-0.0":
            return got == 0 and math.copysign(1.0, got) < 0
        return cast(float(want)) == got and math.copysign(1.0, cast(float(want))) == math.copysign(1.0, got)
    if dtype in ("DT_INT64", "DT_UINT64"):
        return int(want) == got
    if dtype == "DT_STRING":
        if isinstance(want, dict):
            return base64.b64decode(want["b64"]) == got
        return want.encode("utf-8") == got
    return want == got


def check_tensors(expect, req):
    check(sorted(req.inputs) == sorted(expect), "inputs %s, expected %s" % (sorted(req.inputs), sorted(expect)))
    for alias, want in expect.items():
        t = req.inputs[alias]
        check(types_pb2.DataType.Name(t.dtype) == want["dtype"],
              "input %s: dtype %s, expected %s" % (alias, types_pb2.DataType.Name(t.dtype), want["dtype"]))
        shape = [d.size for d in t.tensor_shape.dim]
        check(shape == want["shape"], "input %s: shape %s, expected %s" % (alias, shape, want["shape"]))
        vals = tensor_values(t)
        check(len(vals) == len(want["values"]), "input %s: %d values, expected %d" % (alias, len(vals), len(want["values"])))
        for i, (w, g) in enumerate(zip(want["values"], vals)):
            check(same_value(want["dtype"], w, g), "input %s[%d]: %r, expected %r" % (alias, i, g, w))


def check_model_spec(want, spec):
    check(spec.name == want.get("name", spec.name), "model_spec.name %r" % spec.name)
    which = spec.WhichOneof("version_choice")
    if "version" in want:
        check(which == "version" and spec.version.value == int(want["version"]),
              "model_spec.version: %s, expected %s" % (spec.version.value if which == "version" else which, want["version"]))
    elif "version_label" in want:
        check(which == "version_label" and spec.version_label == want["version_label"],
              "model_spec.version_label: %r" % spec.version_label)
    else:
        check(which is None, "model_spec has %s set, expected neither version nor label" % which)
    check(spec.signature_name == want.get("signature_name", ""),
          "model_spec.signature_name %r, expected %r" % (spec.signature_name, want.get("signature_name", "")))


def compact_example(ex):
    out = {}
    for name, feat in ex.features.feature.items():
        kind = feat.WhichOneof("kind")
        if kind is None:
            out[name] = {}
        elif kind == "bytes_list":
            vals = []
            for b in feat.bytes_list.value:
                try:
                    vals.append(b.decode("utf-8"))
                except UnicodeDecodeError:
                    vals.append({"b64": base64.b64encode(b).decode()})
            out[name] = {"bytes_list": vals}
        elif kind == "float_list":
            out[name] = {"float_list": list(feat.float_list.value)}
        else:
            out[name] = {"int64_list": [str(v) for v in feat.int64_list.value]}
    return out


def normalise_input(d):
    """Floats in the case's compact Input rounded to float32, as they travel."""
    if isinstance(d, dict):
        return {k: ([f32(v) for v in val] if k == "float_list" else normalise_input(val)) for k, val in d.items()}
    if isinstance(d, list):
        return [normalise_input(v) for v in d]
    return d


def check_input(want, inp):
    kind = inp.WhichOneof("kind")
    if kind == "example_list":
        got = {"example_list": {"examples": [compact_example(e) for e in inp.example_list.examples]}}
    elif kind == "example_list_with_context":
        c = inp.example_list_with_context
        got = {"example_list_with_context": {"context": compact_example(c.context),
                                             "examples": [compact_example(e) for e in c.examples]}}
    else:
        got = {}
    check(got == normalise_input(want), "Input %s, expected %s" % (json.dumps(got), json.dumps(want)))


def recorded_calls(path):
    calls = []
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                rec = json.loads(line)
                cls = REQUEST_TYPES.get(rec["method"])
                if cls is not None:
                    calls.append((rec["method"], cls.FromString(base64.b64decode(rec["request_b64"]))))
    return calls


# ---- the client side ----

def body_bytes(text):
    for errors in ("strict", "surrogateescape", "surrogatepass"):
        try:
            return text.encode("utf-8", errors)
        except UnicodeEncodeError:
            continue
    raise CaseFailure("case body cannot be encoded")


def parse_json_loose(text):
    # TF Serving writes NaN/Infinity as raw tokens; Python's json accepts them
    return json.loads(text)


def send(port, req):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        body = body_bytes(req.get("body", ""))
        headers = dict(req.get("headers", {}))
        conn.putrequest(req["method"], req["path"], skip_accept_encoding=True)
        for k, v in headers.items():
            conn.putheader(k, v)
        if body or req["method"] in ("POST", "PUT", "PATCH"):
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body if body else None)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def check_response(exp, status, raw):
    text = raw.decode("utf-8", errors="surrogateescape")
    check(status == exp["http_status"], "HTTP %d, expected %d; body %.300r" % (status, exp["http_status"], text))
    if "body" in exp:
        check(text == exp["body"], "body %.300r, expected %r" % (text, exp["body"]))
    if "body_contains" in exp:
        check(exp["body_contains"] in text, "body lacks %r: %.300r" % (exp["body_contains"], text))
    if exp.get("body_is_json") is False:
        try:
            json.loads(text)
            raise CaseFailure("body is JSON, expected a non-JSON page")
        except ValueError:
            pass
    if "response_text" in exp:
        check(text == exp["response_text"], "response text\n%s\nexpected\n%s" % (text[:2000], exp["response_text"]))
    if "response_json" in exp:
        try:
            got = parse_json_loose(text)
        except ValueError:
            raise CaseFailure("response is not JSON: %.300r" % text)
        check(got == exp["response_json"], "response %s, expected %s" % (json.dumps(got)[:2000], json.dumps(exp["response_json"])))
    if "error_exact" in exp or "error_contains" in exp:
        try:
            err = parse_json_loose(text).get("error")
        except (ValueError, AttributeError):
            raise CaseFailure("error body is not {\"error\": ...}: %.300r" % text)
        check(isinstance(err, str), "no error string in %.300r" % text)
        if "error_exact" in exp:
            check(err == exp["error_exact"], "error %r, expected %r" % (err, exp["error_exact"]))
        if "error_contains" in exp:
            check(exp["error_contains"] in err, "error %r lacks %r" % (err, exp["error_contains"]))


def check_backend(case, calls):
    exp = case["expect"]
    method = exp.get("grpc_method")
    needs_call = method or "tensors" in exp or "model_spec" in exp or "input" in exp
    if not needs_call:
        return
    method = method or PREDICT
    mine = [req for m, req in calls if m == method]
    check(mine, "no %s call reached the backend (calls: %s)" % (method, [m for m, _ in calls]))
    req = mine[-1]
    if "model_spec" in exp:
        check(req.HasField("model_spec"), "request has no model_spec")
        check_model_spec(exp["model_spec"], req.model_spec)
    if "tensors" in exp:
        check_tensors(exp["tensors"], req)
    if "input" in exp:
        check_input(exp["input"], req.input)
    if "metadata_field" in exp:
        check(list(req.metadata_field) == exp["metadata_field"], "metadata_field %s" % list(req.metadata_field))


def run_case(case, tmpdir):
    path = harness.write_json(tmpdir, "models.json", model_file(case))
    record = os.path.join(tmpdir, "calls.jsonl")
    if os.path.exists(record):
        os.unlink(record)
    try:
        sim = harness.Sim("--no-builtin", "--models", path, "--record", record)
    except harness.StartError as e:
        raise SimBroken(str(e))
    gw = None
    try:
        self_check(case, sim)
        # truncate in place: tfs-sim keeps the file open (O_APPEND), so an unlinked file would
        # swallow every later record
        open(record, "w").close()
        try:
            gw = harness.Proc([harness.binary("tfgate"), "--listen", "127.0.0.1:0", "--backend", sim.addr],
                              r"tfgate listening on \S*?:(\d+)")
        except FileNotFoundError as e:
            raise CaseFailure(str(e))
        except harness.StartError as e:
            raise CaseFailure("tfgate did not start: %s" % e)
        status, raw = send(int(gw.match.group(1)), case["request"])
        check_response(case["expect"], status, raw)
        check_backend(case, recorded_calls(record))
    finally:
        if gw is not None:
            code = gw.stop()
            if code not in (0, None):
                raise CaseFailure("tfgate exited with %s: %s" % (code, gw.stderr()[-500:]))
        sim.stop()


def load_xfail():
    path = os.path.join(HERE, "expected_failures.txt")
    out = set()
    with open(path) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if line:
                out.add(line)
    return out


def main(argv):
    files, pattern, verbose = [], None, False
    it = iter(argv)
    for a in it:
        if a == "-k":
            pattern = next(it)
        elif a == "-v":
            verbose = True
        else:
            files.append(a)
    if not files:
        shared = os.environ.get("TG_SHARED_DIR", os.path.join(harness.SOURCE_DIR, "..", "shared"))
        files = [os.path.join(shared, "spec", "tfs_rest_cases.public.json")]
    cases = []
    for f in files:
        with open(f) as fh:
            cases.extend(json.load(fh))
    if pattern:
        cases = [c for c in cases if pattern in c["id"]]
    xfail = load_xfail()
    unknown = xfail - {c["id"] for c in cases}
    counts = {"pass": 0, "xfail": 0, "FAIL": 0, "XPASS": 0, "SIM": 0}
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as tmpdir:
        for case in cases:
            cid = case["id"]
            try:
                run_case(case, tmpdir)
                outcome, detail = ("XPASS", "passes: remove it from expected_failures.txt") if cid in xfail else ("pass", "")
            except SimBroken as e:
                outcome, detail = "SIM", "tfs-sim cannot serve this case: %s" % e
            except CaseFailure as e:
                outcome, detail = ("xfail" if cid in xfail else "FAIL"), str(e)
            except Exception as e:  # a runner bug must not pass silently
                outcome, detail = "FAIL", "runner error: %s\n%s" % (e, traceback.format_exc())
            counts[outcome] += 1
            if outcome in ("FAIL", "XPASS", "SIM") or verbose:
                print("%-6s %s: %s" % (outcome, cid, detail), flush=True)
            elif outcome == "xfail":
                print("xfail  %s: %s" % (cid, detail.splitlines()[0][:160] if detail else ""), flush=True)
            else:
                print("pass   %s" % cid, flush=True)
    print("\nconformance: %d cases in %.1fs: %d passed, %d expected failures, %d FAILED, %d XPASS, %d tfs-sim errors"
          % (len(cases), time.monotonic() - t0, counts["pass"], counts["xfail"], counts["FAIL"],
             counts["XPASS"], counts["SIM"]))
    if unknown and not pattern:
        print("expected_failures.txt names cases that do not exist: %s" % sorted(unknown))
    bad = counts["FAIL"] + counts["XPASS"] + counts["SIM"] + (len(unknown) if not pattern else 0)
    print("%d passed, %d failed" % (counts["pass"] + counts["xfail"], bad))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
