#!/usr/bin/python3
"""Calls tensorflow.serving.PredictionService/Predict with Debian's python3-grpcio and the stubs
generated from proto/ at build time (build/py).

  /usr/bin/python3 examples/grpc_predict.py --target 127.0.0.1:8600 half_plus_two 1 2 5
  /usr/bin/python3 examples/grpc_predict.py --frame /tmp/predict.grpc half_plus_two 1 2 5
      (writes a gRPC-framed request body for curl or h2load instead of calling)
"""
import argparse
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.environ.get("TG_PY_DIR", os.path.join(HERE, "..", "build", "py")))

from tensorflow_serving.apis import predict_pb2  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", default="127.0.0.1:8500")
    ap.add_argument("--input", default="x", help="input alias (default x)")
    ap.add_argument("--version", type=int)
    ap.add_argument("--label")
    ap.add_argument("--signature", default="")
    ap.add_argument("--frame", help="write the gRPC-framed request to FILE and exit")
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("model")
    ap.add_argument("values", nargs="+", type=float)
    a = ap.parse_args()

    req = predict_pb2.PredictRequest()
    req.model_spec.name = a.model
    req.model_spec.signature_name = a.signature
    if a.version is not None:
        req.model_spec.version.value = a.version
    elif a.label:
        req.model_spec.version_label = a.label
    t = req.inputs[a.input]
    t.dtype = 1  # DT_FLOAT
    t.tensor_shape.dim.add().size = len(a.values)
    t.float_val.extend(a.values)

    if a.frame:
        msg = req.SerializeToString()
        with open(a.frame, "wb") as f:
            f.write(b"\0" + struct.pack(">I", len(msg)) + msg)
        return 0

    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc
    with grpc.insecure_channel(a.target) as ch:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(ch)
        try:
            resp = stub.Predict(req, timeout=a.timeout)
        except grpc.RpcError as e:
            print("error: %s: %s" % (e.code().name, e.details()), file=sys.stderr)
            return 1
    for alias, out in sorted(resp.outputs.items()):
        print("%s = %s" % (alias, list(out.float_val) or out))
    print("model_spec: name=%s version=%d signature=%s" % (
        resp.model_spec.name, resp.model_spec.version.value, resp.model_spec.signature_name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
