/*
 * error.c - see error.h.
 */
#include <grpc/status.h>

#include "tfgate/common.h"
#include "tfgate/error.h"

static const struct tg_error_info table[] = {
    {"TG_OK", 200, GRPC_STATUS_OK, "OK"},
    {"TG_EINVAL", 400, GRPC_STATUS_INVALID_ARGUMENT, "malformed request"},
    {"TG_ETOOLARGE", 413, GRPC_STATUS_RESOURCE_EXHAUSTED, "request too large"},
    {"TG_EHEADERS", 431, GRPC_STATUS_RESOURCE_EXHAUSTED, "request header fields too large"},
    {"TG_ETIMEOUT", 408, GRPC_STATUS_DEADLINE_EXCEEDED, "request timeout"},
    {"TG_EDEADLINE", 504, GRPC_STATUS_DEADLINE_EXCEEDED, "deadline exceeded"},
    {"TG_EUNAVAILABLE", 503, GRPC_STATUS_UNAVAILABLE, "upstream unavailable"},
    {"TG_ENOTFOUND", 404, GRPC_STATUS_UNIMPLEMENTED, "not found"},
    {"TG_EUNIMPLEMENTED", 501, GRPC_STATUS_UNIMPLEMENTED, "not implemented"},
    {"TG_ECANCELLED", 499, GRPC_STATUS_CANCELLED, "cancelled"},
    {"TG_EINTERNAL", 500, GRPC_STATUS_INTERNAL, "internal error"},
    {"TG_EMETHOD", 405, GRPC_STATUS_UNIMPLEMENTED, "method not allowed"},
    {"TG_ESHUTDOWN", 503, GRPC_STATUS_UNAVAILABLE, "the gateway is shutting down"},
    {"TG_ENOROUTE", 404, GRPC_STATUS_NOT_FOUND, "no route for this model"},
};

const struct tg_error_info *tg_error_info(int err)
{
    int i = -err;
    if (i < 0 || i >= (int)TG_ARRAY_SIZE(table))
        i = -TG_EINTERNAL;
    return &table[i];
}

int tg_grpc_to_http(int code)
{
    switch (code) {
    case GRPC_STATUS_OK:
        return 200;
    case GRPC_STATUS_CANCELLED:
        return 499;
    case GRPC_STATUS_INVALID_ARGUMENT:
    case GRPC_STATUS_FAILED_PRECONDITION:
    case GRPC_STATUS_OUT_OF_RANGE:
        return 400;
    case GRPC_STATUS_DEADLINE_EXCEEDED:
        return 504;
    case GRPC_STATUS_NOT_FOUND:
        return 404;
    case GRPC_STATUS_ALREADY_EXISTS:
    case GRPC_STATUS_ABORTED:
        return 409;
    case GRPC_STATUS_PERMISSION_DENIED:
        return 403;
    case GRPC_STATUS_RESOURCE_EXHAUSTED:
        return 429;
    case GRPC_STATUS_UNIMPLEMENTED:
        return 501;
    case GRPC_STATUS_UNAVAILABLE:
        return 503;
    case GRPC_STATUS_UNAUTHENTICATED:
        return 401;
    default: /* UNKNOWN, INTERNAL, DATA_LOSS and anything else */
        return 500;
    }
}

const char *tg_http_reason(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 101:
        return "Switching Protocols";
    case 200:
        return "OK";
    case 204:
        return "No Content";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 411:
        return "Length Required";
    case 413:
        return "Payload Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 417:
        return "Expectation Failed";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 499:
        return "Client Closed Request";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    }
    return "Unknown";
}
