/*
 * router.h - chooses the handler for a request once its headers are complete:
 * gRPC (content-type application/grpc over HTTP/2) goes to the passthrough; paths under
 * TF Serving's REST prefix (?i)/v1/ to the REST API; anything else gets TF Serving's own
 * non-JSON 404 page (spec/tfserving.md §3.1).
 *
 * Thread affinity: the stream's worker.
 */
#ifndef TG_ROUTER_H
#define TG_ROUTER_H

struct tg_stream;
struct tg_handler;

/* Never NULL. */
const struct tg_handler *tg_router_pick(struct tg_stream *st);

extern const struct tg_handler tg_grpc_proxy_handler;

#endif /* TG_ROUTER_H */
