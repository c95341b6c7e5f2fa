/*
 * grpc_wire.h - the parts of the gRPC wire protocol the gateway reads itself: the methods it
 * serves, length-prefixed message framing, grpc-timeout, grpc-message percent-encoding, and
 * the ModelSpec (field 1) of a serving request, the only part of a message it decodes
 * (for routing and, later, access control). Pure functions, no I/O.
 *
 * Thread affinity: any thread.
 */
#ifndef TG_GRPC_WIRE_H
#define TG_GRPC_WIRE_H

#include <stddef.h>
#include <stdint.h>

struct tg_arena;

enum tg_grpc_method {
    TG_GM_PREDICT = 0,
    TG_GM_CLASSIFY,
    TG_GM_REGRESS,
    TG_GM_MULTI_INFERENCE,
    TG_GM_GET_MODEL_METADATA,
    TG_GM_GET_MODEL_STATUS,
    TG_GM_RELOAD_CONFIG,
    TG_GM_COUNT,
};

/* "/tensorflow.serving.PredictionService/Predict" etc., indexed by enum tg_grpc_method. */
extern const char *const tg_grpc_method_paths[TG_GM_COUNT];

/* The method for an HTTP/2 :path, or -1 when the gateway does not serve it. */
int tg_grpc_method_from_path(const char *path, size_t len);

/* Extracts the single message of a unary gRPC request body (5-byte prefix: compressed flag,
 * big-endian length). A compressed message (flag 1) is inflated when |encoding| is "gzip" or
 * "deflate"; the result, allocated from |arena|, may not exceed |max|.
 * Returns 0, or TG_EINVAL (bad framing, not exactly one message; |*why| says which),
 * TG_ETOOLARGE (over |max|), TG_EUNIMPLEMENTED (compressed with an encoding not supported). */
int tg_grpc_unframe(const uint8_t *body, size_t len, uint64_t max, const char *encoding,
                    struct tg_arena *arena, const uint8_t **msg, size_t *msg_len, const char **why);

/* Inflates |in| (gzip when |gzip|, else zlib/deflate) into |arena|, at most |max| bytes.
 * Returns 0, TG_ETOOLARGE, or TG_EINVAL (corrupt or truncated). Used for gRPC messages and
 * for gzip-encoded REST bodies. */
int tg_inflate(struct tg_arena *arena, const uint8_t *in, size_t len, int gzip, uint64_t max,
               const uint8_t **out, size_t *out_len);

/* Parses a grpc-timeout value ("100m", "5S", "1H": 1-8 digits and a unit H M S m u n) into
 * milliseconds, rounded up. Returns 0, or -1 when malformed. */
int tg_grpc_parse_timeout(const char *s, size_t len, uint64_t *ms);

/* Percent-encodes a grpc-message (gRPC over HTTP/2: bytes outside 0x20-0x7E and '%').
 * |out| must hold 3*|len|+1 bytes; returns the encoded length (NUL-terminated). */
size_t tg_grpc_percent_encode(const char *in, size_t len, char *out);

struct tg_model_spec {
    const char *name; /* "" when the request has no ModelSpec */
    int has_version;  /* version present (even 0) */
    int64_t version;
    const char *label;     /* NULL unless version_label is set */
    const char *signature; /* "" = serving_default */
};

/* Reads the ModelSpec of a request of |method| from the serialized message: field 1 of every
 * request type (for MultiInference, the model_spec of the first task). Strings live in
 * |arena|. Returns 0 (a missing ModelSpec gives name ""), or TG_EINVAL when the message is not
 * valid protobuf. */
int tg_grpc_model_spec(enum tg_grpc_method method, const uint8_t *msg, size_t len,
                       struct tg_arena *arena, struct tg_model_spec *out);

/* The ModelSpec of task |task| (MultiInference has one per task; every other request has only
 * task 0), for checks that must see all of them (RBAC). Returns 1 with |out| filled, 0 when
 * there is no such task, -1 when the message is not valid protobuf. */
int tg_grpc_task_model_spec(enum tg_grpc_method method, const uint8_t *msg, size_t len, size_t task,
                            struct tg_arena *arena, struct tg_model_spec *out);

/* The model version a backend's answer reports (the response's ModelSpec: field 2 of
 * Predict/Classify/Regress responses, field 1 of GetModelMetadata's). Returns 1 with
 * |*version|, 0 when the answer names none (or does not parse). */
int tg_grpc_response_version(enum tg_grpc_method method, const uint8_t *msg, size_t len,
                             struct tg_arena *arena, int64_t *version);

/* |msg| with its ModelSpec's version_label set to |label| (a ModelSpec field appended:
 * protobuf merges it, and the later label wins the version oneof). In |arena|. */
const uint8_t *tg_grpc_with_label(const uint8_t *msg, size_t len, const char *label,
                                  struct tg_arena *arena, size_t *out_len);

struct tg_request_size;

/* The size of a serialized PredictRequest for admission (admission.h) and routing: the inputs'
 * shapes are read from the wire (map entries, TensorProto.tensor_shape, with protobuf's merge
 * rules), nothing else is decoded; |out->bytes| is |len|. Returns 0, or TG_EINVAL when the
 * message is not valid protobuf. */
int tg_grpc_predict_size(const uint8_t *msg, size_t len, struct tg_arena *arena,
                         struct tg_request_size *out);

/* 1 if an HTTP/2 request header may be forwarded to the backend as gRPC metadata: lower-case
 * token name, not a pseudo-header, not hop-by-hop, not one gRPC core sets itself (te,
 * content-type, user-agent, grpc-*), not host or authorization; and for non "-bin" names a
 * value of printable ASCII (gRPC core refuses the whole call otherwise). */
int tg_grpc_header_forwardable(const char *name, size_t name_len, const char *value,
                               size_t value_len);

#endif /* TG_GRPC_WIRE_H */
