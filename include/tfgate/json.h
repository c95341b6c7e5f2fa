/*
 * json.h - the JSON parser of the REST API. It reproduces what TF Serving's parser (RapidJSON
 * 1.1.0, kParseNanAndInfFlag, iterative, stop when done) accepts and how it fails, message
 * and byte offset, because clients see those texts (spec/tfserving.md §3.4):
 *   - NaN, Inf, Infinity, -Inf, -Infinity (and -NaN) are numbers; nan, inf, +Infinity are not;
 *   - numbers keep their text class: an integer literal that fits int64 or uint64 is an
 *     integer (-0 is the integer 0), everything else a double (correctly rounded here, where
 *     RapidJSON may differ by 1 ulp on long mantissas; documented);
 *   - invalid UTF-8 in strings passes through unchanged; \u0000 is kept;
 *   - parsing stops after the first complete value (trailing data is ignored) and at a NUL
 *     byte outside strings;
 *   - duplicate keys are kept (lookups take the first, as TF Serving does).
 * Nesting deeper than |max_depth| is refused (TF Serving parses any depth; we bound it).
 *
 * Values live in an arena and point into it; the input text is not referenced after parsing.
 * Thread affinity: pure, any thread.
 */
#ifndef TG_JSON_H
#define TG_JSON_H

#include <stddef.h>
#include <stdint.h>

struct tg_arena;

enum tg_jtype {
    TG_JNULL = 0,
    TG_JFALSE,
    TG_JTRUE,
    TG_JOBJECT,
    TG_JARRAY,
    TG_JSTRING,
    TG_JNUMBER,
};

/* Number classes, by the literal's text (RapidJSON's IsInt64/IsUint64/IsDouble). */
enum tg_jnum {
    TG_JNUM_INT = 0, /* integer literal in [-2^63, 2^63): |i64| */
    TG_JNUM_UINT,    /* integer literal in [2^63, 2^64): |u64| */
    TG_JNUM_DOUBLE,  /* anything with '.', 'e', beyond uint64, or NaN/Inf: |d| */
};

struct tg_jmember;

struct tg_jval {
    uint8_t type;      /* enum tg_jtype */
    uint8_t num;       /* enum tg_jnum, for TG_JNUMBER */
    uint8_t nonfinite; /* NaN or +-Inf literal */
    uint32_t len;      /* items, members, or string bytes */
    union {
        struct tg_jval *items;      /* TG_JARRAY */
        struct tg_jmember *members; /* TG_JOBJECT, in document order */
        const char *str;            /* TG_JSTRING, NUL-terminated (may contain NULs) */
        int64_t i64;
        uint64_t u64;
        double d;
    } u;
};

struct tg_jmember {
    const char *key; /* NUL-terminated; may contain NULs */
    uint32_t key_len;
    struct tg_jval val;
};

struct tg_json_error {
    const char *message; /* RapidJSON's English text, e.g. "Invalid value." */
    size_t offset;       /* byte offset RapidJSON reports */
};

/* Parses |text|. Returns 0 with the root in |*out|, or -1 with |err| filled. An input that
 * is empty or only whitespace gives "The document is empty." (the REST layer words a
 * zero-length body differently, §3.4). */
int tg_json_parse(const char *text, size_t len, struct tg_arena *arena, size_t max_depth,
                  struct tg_jval **out, struct tg_json_error *err);

/* Reads the number literal at |text|[*pos] exactly as tg_json_parse would (same acceptance,
 * class and value) and advances |*pos| past it. Returns 0, or -1 where tg_json_parse would
 * fail (the caller that needs the message parses the document). For scanners that never
 * build a DOM (tensor_json_fast.h). */
int tg_json_scan_number(const char *text, size_t len, size_t *pos, struct tg_jval *v);

/* The first member named |key| (|klen| bytes), or NULL. */
const struct tg_jval *tg_json_get(const struct tg_jval *obj, const char *key, size_t klen);

/* The value as a double (integers converted). */
double tg_json_number(const struct tg_jval *v);

/* Renders |v| as TF Serving >= 2.18 does in error messages: RapidJSON's PrettyWriter with
 * single-line arrays, 4-space objects, shortest doubles ("1.0", "1e300"), NaN/Inf as nothing,
 * cut at 256 bytes. Returns a NUL-terminated string in |arena|. */
const char *tg_json_debug(const struct tg_jval *v, struct tg_arena *arena);

/* RapidJSON's shortest form of a double ("1.0", "0.1", "1e300", "1.5e-7"); |out| holds 32. */
size_t tg_json_format_double(double d, char *out);

/* "Null", "False", "True", "Object", "Array", "String", "Number" (the names in TF errors). */
const char *tg_json_type_name(const struct tg_jval *v);

#endif /* TG_JSON_H */
