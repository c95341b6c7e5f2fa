/*
 * json.c - see json.h. The structure follows RapidJSON 1.1.0's reader closely where that
 * decides an error's text or offset (numbers, strings, literals); the values themselves are
 * computed with a correctly rounded strtod in the C locale.
 */
#include <float.h>
#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tfgate/arena.h"
#include "tfgate/common.h"
#include "tfgate/json.h"

struct parser {
    const char *s; /* text */
    size_t len;    /* up to the first NUL outside strings, found lazily */
    size_t pos;
    struct tg_arena *a;
    size_t max_depth;
    struct tg_json_error *err;
    int failed;
    /* Scratch stack for the items of the arrays and objects being parsed: one buffer for the
     * whole document instead of one malloc per array (an image has 50,000 small arrays). */
    char *stk;
    size_t stk_n, stk_cap;
};

/* RapidJSON's input stream reports a NUL byte as the end of the input. */
static inline int peek(const struct parser *p)
{
    return p->pos < p->len ? (unsigned char)p->s[p->pos] : 0;
}

static int fail(struct parser *p, const char *msg, size_t offset)
{
    if (!p->failed) {
        p->failed = 1;
        p->err->message = msg;
        p->err->offset = offset;
    }
    return -1;
}

static void skip_ws(struct parser *p)
{
    for (;;) {
        int c = peek(p);
        if (c == ' ' || c == '\n' || c == '\r' || c == '\t')
            p->pos++;
        else
            return;
    }
}

static int consume(struct parser *p, int c)
{
    if (peek(p) == c && c != 0) {
        p->pos++;
        return 1;
    }
    return 0;
}

static int parse_value(struct parser *p, struct tg_jval *v, size_t depth);

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static int parse_hex4(struct parser *p, size_t escape_offset, unsigned *out)
{
    unsigned cp = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(peek(p));
        if (h < 0)
            return fail(p, "Incorrect hex digit after \\u escape in string.", escape_offset);
        cp = cp << 4 | (unsigned)h;
        p->pos++;
    }
    *out = cp;
    return 0;
}

/* Growable byte buffer for string contents (freed by the caller). */
struct sbuf {
    char *b;
    size_t n, cap;
};

static void sput(struct sbuf *sb, char c)
{
    if (sb->n == sb->cap) {
        sb->cap = sb->cap ? sb->cap * 2 : 64;
        sb->b = tg_xrealloc(sb->b, sb->cap);
    }
    sb->b[sb->n++] = c;
}

static void put_utf8(struct sbuf *sb, unsigned cp)
{
    if (cp < 0x80) {
        sput(sb, (char)cp);
    } else if (cp < 0x800) {
        sput(sb, (char)(0xc0 | (cp >> 6)));
        sput(sb, (char)(0x80 | (cp & 0x3f)));
    } else if (cp < 0x10000) { /* a lone low surrogate lands here: CESU-style, as RapidJSON */
        sput(sb, (char)(0xe0 | (cp >> 12)));
        sput(sb, (char)(0x80 | ((cp >> 6) & 0x3f)));
        sput(sb, (char)(0x80 | (cp & 0x3f)));
    } else {
        sput(sb, (char)(0xf0 | (cp >> 18)));
        sput(sb, (char)(0x80 | ((cp >> 12) & 0x3f)));
        sput(sb, (char)(0x80 | ((cp >> 6) & 0x3f)));
        sput(sb, (char)(0x80 | (cp & 0x3f)));
    }
}

/* Strings: the opening quote is at p->pos. Raw bytes are copied unchecked (no UTF-8
 * validation, like TF Serving); a raw NUL reads as the end of input. */
static int parse_string(struct parser *p, const char **out, uint32_t *out_len)
{
    static const char esc[256] = {['"'] = '"',  ['\\'] = '\\', ['/'] = '/',  ['b'] = '\b',
                                  ['f'] = '\f', ['n'] = '\n',  ['r'] = '\r', ['t'] = '\t'};
    struct sbuf sb = {0};
    p->pos++; /* the quote */
    for (;;) {
        /* a raw NUL is data to us but end of input to RapidJSON */
        int c = p->pos < p->len ? (unsigned char)p->s[p->pos] : -1;
        if (c == '\\') {
            size_t eo = p->pos;
            p->pos++;
            int e = peek(p);
            if (e != 0 && esc[e]) {
                p->pos++;
                sput(&sb, esc[e]);
            } else if (e == 'u') {
                unsigned cp, cp2;
                p->pos++;
                if (parse_hex4(p, eo, &cp) != 0)
                    goto bad;
                if (cp >= 0xd800 && cp <= 0xdbff) {
                    if (!consume(p, '\\') || !consume(p, 'u')) {
                        fail(p, "The surrogate pair in string is invalid.", eo);
                        goto bad;
                    }
                    if (parse_hex4(p, eo, &cp2) != 0)
                        goto bad;
                    if (cp2 < 0xdc00 || cp2 > 0xdfff) {
                        fail(p, "The surrogate pair in string is invalid.", eo);
                        goto bad;
                    }
                    cp = (((cp - 0xd800) << 10) | (cp2 - 0xdc00)) + 0x10000;
                }
                put_utf8(&sb, cp);
            } else {
                fail(p, "Invalid escape character in string.", eo);
                goto bad;
            }
        } else if (c == '"') {
            p->pos++;
            char *s = tg_arena_alloc(p->a, sb.n + 1, 1);
            if (sb.n)
                memcpy(s, sb.b, sb.n);
            s[sb.n] = '\0';
            *out = s;
            *out_len = (uint32_t)sb.n;
            free(sb.b);
            return 0;
        } else if (c < 0x20) {
            if (c <= 0)
                fail(p, "Missing a closing quotation mark in string.", p->pos);
            else
                fail(p, "Invalid escape character in string.", p->pos);
            goto bad;
        } else {
            sput(&sb, (char)c);
            p->pos++;
        }
    }
bad:
    free(sb.b);
    return -1;
}

static int is_digit(int c)
{
    return c >= '0' && c <= '9';
}

/* If the 8 bytes at |s| are all ASCII digits, their value (first byte most significant) in
 * |*out|: a handful of 64-bit operations instead of eight rounds of the digit loop. */
static int eight_digits(const char *s, uint32_t *out)
{
    uint64_t v;
    memcpy(&v, s, 8);
    /* each byte is 0x30-0x39: high nibble 3, and adding 6 does not leave it */
    if ((v & 0xf0f0f0f0f0f0f0f0u) != 0x3030303030303030u ||
        ((v + 0x0606060606060606u) & 0xf0f0f0f0f0f0f0f0u) != 0x3030303030303030u)
        return 0;
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    v -= 0x3030303030303030u;
    /* bytes 0, 2, 4, 6 become the two-digit pairs d0d1, d2d3, d4d5, d6d7 */
    v = v * 10 + (v >> 8);
    const uint64_t mask = 0x000000ff000000ffu;
    /* (d0d1 * 10^6 + d4d5 * 10^2) and (d2d3 * 10^4 + d6d7) land in the high 32 bits */
    uint64_t hi = (v & mask) * (100 + (UINT64_C(1000000) << 32));
    uint64_t lo = ((v >> 16) & mask) * (1 + (UINT64_C(10000) << 32));
    *out = (uint32_t)((hi + lo) >> 32);
#else
    uint32_t r = 0;
    for (int i = 0; i < 8; i++)
        r = r * 10 + (uint32_t)(s[i] - '0');
    *out = r;
#endif
    return 1;
}

static locale_t c_locale(void)
{
    static _Thread_local locale_t loc;
    if (loc == (locale_t)0)
        loc = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
    return loc;
}

/*
 * Correctly rounded decimal-to-double for the common literal, written here because strtod is
 * most of the cost of a float tensor (bench/micro/bench_tensor_json.c) and the libraries that
 * do this fast (fast_float, simdjson) are C++ and not in Debian's C stack.
 *
 * parse_number gathers the literal's digits as m * 10^exp10 with m < 2^64 exact. With x87's
 * 64-bit long double, m and 10^|e| (|e| <= 27, 5^27 < 2^64) are exact, so one multiply or
 * divide gives the value correctly rounded to 64 bits. Rounding that to double is correct
 * unless the 64-bit result sits within one unit of a double's rounding midpoint (the low 11
 * bits are 0x3ff, 0x400 or 0x401): then the caller falls back to strtod. Returns 0 with the
 * value in |*out|, or -1 to ask for strtod.
 */
static int exact_decimal(int minus, uint64_t m, long exp10, double *out)
{
#if LDBL_MANT_DIG == 64 && (defined(__x86_64__) || defined(__i386__))
    static const long double pow10[28] = {1e0L,  1e1L,  1e2L,  1e3L,  1e4L,  1e5L,  1e6L,
                                          1e7L,  1e8L,  1e9L,  1e10L, 1e11L, 1e12L, 1e13L,
                                          1e14L, 1e15L, 1e16L, 1e17L, 1e18L, 1e19L, 1e20L,
                                          1e21L, 1e22L, 1e23L, 1e24L, 1e25L, 1e26L, 1e27L};
    if (m == 0) {
        *out = minus ? -0.0 : 0.0;
        return 0;
    }
    /* Clinger's case first: m and 10^|e| both exact doubles, so one IEEE operation rounds
     * correctly, without x87's slow divide and 80-bit spill */
    static const double pow10d[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                      1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                      1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
    if (m <= (UINT64_C(1) << 53) && exp10 >= -22 && exp10 <= 22) {
        double d = exp10 < 0 ? (double)m / pow10d[-exp10] : (double)m * pow10d[exp10];
        *out = minus ? -d : d;
        return 0;
    }
    if (exp10 < -27 || exp10 > 27)
        return -1;
    long double v = exp10 < 0 ? (long double)m / pow10[-exp10] : (long double)m * pow10[exp10];
    uint64_t bits;
    memcpy(&bits, &v, sizeof(bits)); /* the x87 significand, explicit integer bit included */
    unsigned low = (unsigned)(bits & 0x7ff);
    if (low >= 0x3ff && low <= 0x401)
        return -1;
    *out = minus ? -(double)v : (double)v;
    return 0;
#else
    (void)minus;
    (void)m;
    (void)exp10;
    (void)out;
    return -1;
#endif
}

/* RapidJSON's ParseNumber: the same acceptance, classification and error offsets. */
static int parse_number(struct parser *p, struct tg_jval *v)
{
    size_t start = p->pos;
    int minus = consume(p, '-');
    int use64 = 0, use_double = 0;
    uint64_t i64 = 0;
    unsigned i = 0;

    v->type = TG_JNUMBER;
    if (peek(p) == '0') {
        p->pos++;
    } else if (peek(p) >= '1' && peek(p) <= '9') {
        i = (unsigned)(peek(p) - '0');
        p->pos++;
        while (is_digit(peek(p))) {
            if (minus ? i >= 214748364u : i >= 429496729u) {
                if (minus ? (i != 214748364u || peek(p) > '8')
                          : (i != 429496729u || peek(p) > '5')) {
                    i64 = i;
                    use64 = 1;
                    break;
                }
            }
            i = i * 10 + (unsigned)(peek(p) - '0');
            p->pos++;
        }
    } else if (peek(p) == 'I' || peek(p) == 'N') {
        double d;
        if (consume(p, 'N')) {
            if (!consume(p, 'a') || !consume(p, 'N'))
                return fail(p, "Invalid value.", p->pos);
            d = NAN;
        } else {
            consume(p, 'I');
            if (!consume(p, 'n') || !consume(p, 'f'))
                return fail(p, "Invalid value.", p->pos);
            if (peek(p) == 'i' && !(consume(p, 'i') && consume(p, 'n') && consume(p, 'i') &&
                                    consume(p, 't') && consume(p, 'y')))
                return fail(p, "Invalid value.", p->pos);
            d = minus ? -INFINITY : INFINITY;
        }
        v->num = TG_JNUM_DOUBLE;
        v->nonfinite = 1;
        v->u.d = d;
        return 0;
    } else {
        return fail(p, "Invalid value.", p->pos);
    }

    if (use64) {
        while (is_digit(peek(p))) {
            if (minus ? i64 >= 922337203685477580ull : i64 >= 1844674407370955161ull) {
                if (minus ? (i64 != 922337203685477580ull || peek(p) > '8')
                          : (i64 != 1844674407370955161ull || peek(p) > '5')) {
                    use_double = 1;
                    break;
                }
            }
            i64 = i64 * 10 + (uint64_t)(peek(p) - '0');
            p->pos++;
        }
    }
    /* digits past uint64: the value is a double; more than 308 of them is "too big" */
    size_t big_digits = 0;
    if (use_double) {
        while (is_digit(peek(p))) {
            if (++big_digits + 19 > 308)
                return fail(p, "Number too big to be stored in double.", start);
            p->pos++;
        }
    }
    /* the significand for exact_decimal, while it fits: integer part, then fraction digits */
    uint64_t sig = use64 ? i64 : i;
    int sig_exact = !use_double;
    int frac_digits = 0, has_frac = 0, has_exp = 0;
    if (consume(p, '.')) {
        has_frac = 1;
        if (!is_digit(peek(p)))
            return fail(p, "Miss fraction part in number.", p->pos);
        /* eight digits at a time while the significand has room: most of a float tensor's
         * text is fraction digits */
        while (p->len - p->pos >= 8 && sig <= (UINT64_MAX - 99999999u) / 100000000u) {
            uint32_t eight;
            if (!eight_digits(p->s + p->pos, &eight))
                break;
            sig = sig * 100000000u + eight;
            frac_digits += 8;
            p->pos += 8;
        }
        while (is_digit(peek(p))) {
            if (sig > (UINT64_MAX - 9) / 10)
                sig_exact = 0;
            else
                sig = sig * 10 + (uint64_t)(peek(p) - '0');
            frac_digits++;
            p->pos++;
        }
    }
    int exp_minus = 0;
    long exp = 0;
    if (consume(p, 'e') || consume(p, 'E')) {
        has_exp = 1;
        if (consume(p, '+'))
            ;
        else if (consume(p, '-'))
            exp_minus = 1;
        if (!is_digit(peek(p)))
            return fail(p, "Miss exponent in number.", p->pos);
        /* RapidJSON counts at most 17 significant fraction digits into its expFrac */
        long max_exp = 308 + (frac_digits < 17 ? frac_digits : 17);
        while (is_digit(peek(p))) {
            exp = exp * 10 + (peek(p) - '0');
            p->pos++;
            if (!exp_minus && exp > max_exp)
                return fail(p, "Number too big to be stored in double.", start);
            if (exp > 100000000)
                exp = 100000000; /* a negative exponent this large is just zero */
        }
    }
    if (!use_double && !has_frac && !has_exp) {
        if (minus) {
            uint64_t mag = use64 ? i64 : i;
            v->num = TG_JNUM_INT;
            v->u.i64 = mag == 0 ? 0 : (int64_t)(0 - mag); /* -0 is the integer 0 */
        } else {
            uint64_t val = use64 ? i64 : i;
            if (val > INT64_MAX) {
                v->num = TG_JNUM_UINT;
                v->u.u64 = val;
            } else {
                v->num = TG_JNUM_INT;
                v->u.i64 = (int64_t)val;
            }
        }
        return 0;
    }
    /* the value: exact when the fast path can prove it, else strtod in the C locale */
    size_t n = p->pos - start;
    double d;
    if (!sig_exact || exact_decimal(minus, sig, (exp_minus ? -exp : exp) - frac_digits, &d) != 0) {
        char stackbuf[128], *buf = n < sizeof(stackbuf) ? stackbuf : tg_xmalloc(n + 1);
        memcpy(buf, p->s + start, n);
        buf[n] = '\0';
        d = strtod_l(buf, NULL, c_locale());
        if (buf != stackbuf)
            free(buf);
    }
    if (isinf(d))
        return fail(p, "Number too big to be stored in double.", start);
    v->num = TG_JNUM_DOUBLE;
    v->u.d = d;
    return 0;
}

int tg_json_scan_number(const char *text, size_t len, size_t *pos, struct tg_jval *v)
{
    struct tg_json_error err;
    struct parser p = {.s = text, .len = len, .pos = *pos, .err = &err};
    if (parse_number(&p, v) != 0)
        return -1;
    *pos = p.pos;
    return 0;
}

static int parse_literal(struct parser *p, struct tg_jval *v, const char *rest, enum tg_jtype t)
{
    p->pos++;
    for (const char *r = rest; *r; r++) {
        if (!consume(p, *r))
            return fail(p, "Invalid value.", p->pos);
    }
    v->type = (uint8_t)t;
    return 0;
}

/* Growable vector for array items / object members during parsing. */
static void stk_push(struct parser *p, const void *item, size_t size)
{
    if (p->stk_n + size > p->stk_cap) {
        p->stk_cap = p->stk_cap ? p->stk_cap * 2 : 4096;
        p->stk = tg_xrealloc(p->stk, p->stk_cap);
    }
    memcpy(p->stk + p->stk_n, item, size);
    p->stk_n += size;
}

/* Moves the items pushed since |base| into the arena and pops them. */
static void *stk_finish(struct parser *p, size_t base, size_t align)
{
    size_t n = p->stk_n - base;
    void *out = tg_arena_alloc(p->a, n + 1, align);
    if (n)
        memcpy(out, p->stk + base, n);
    p->stk_n = base;
    return out;
}

static int parse_array(struct parser *p, struct tg_jval *v, size_t depth)
{
    size_t base = p->stk_n;
    p->pos++;
    skip_ws(p);
    if (consume(p, ']'))
        goto done;
    for (;;) {
        struct tg_jval it; /* parsed here, then pushed: the stack may move while parsing */
        memset(&it, 0, sizeof(it));
        if (parse_value(p, &it, depth + 1) != 0)
            return -1;
        stk_push(p, &it, sizeof(it));
        skip_ws(p);
        if (consume(p, ','))
            skip_ws(p);
        else if (consume(p, ']'))
            break;
        else
            return fail(p, "Missing a comma or ']' after an array element.", p->pos);
    }
done:
    v->type = TG_JARRAY;
    v->len = (uint32_t)((p->stk_n - base) / sizeof(struct tg_jval));
    v->u.items = stk_finish(p, base, _Alignof(struct tg_jval));
    return 0;
}

static int parse_object(struct parser *p, struct tg_jval *v, size_t depth)
{
    size_t base = p->stk_n;
    p->pos++;
    skip_ws(p);
    if (consume(p, '}'))
        goto done;
    for (;;) {
        if (peek(p) != '"')
            return fail(p, "Missing a name for object member.", p->pos);
        struct tg_jmember m;
        memset(&m, 0, sizeof(m));
        if (parse_string(p, &m.key, &m.key_len) != 0)
            return -1;
        skip_ws(p);
        if (!consume(p, ':'))
            return fail(p, "Missing a colon after a name of object member.", p->pos);
        skip_ws(p);
        if (parse_value(p, &m.val, depth + 1) != 0)
            return -1;
        stk_push(p, &m, sizeof(m));
        skip_ws(p);
        if (consume(p, ','))
            skip_ws(p);
        else if (consume(p, '}'))
            break;
        else
            return fail(p, "Missing a comma or '}' after an object member.", p->pos);
    }
done:
    v->type = TG_JOBJECT;
    v->len = (uint32_t)((p->stk_n - base) / sizeof(struct tg_jmember));
    v->u.members = stk_finish(p, base, _Alignof(struct tg_jmember));
    return 0;
}

static int parse_value(struct parser *p, struct tg_jval *v, size_t depth)
{
    if (depth > p->max_depth)
        return fail(p, "Terminate parsing due to Handler error.", p->pos);
    switch (peek(p)) {
    case 'n':
        return parse_literal(p, v, "ull", TG_JNULL);
    case 't':
        return parse_literal(p, v, "rue", TG_JTRUE);
    case 'f':
        return parse_literal(p, v, "alse", TG_JFALSE);
    case '"':
        v->type = TG_JSTRING;
        return parse_string(p, &v->u.str, &v->len);
    case '{':
        return parse_object(p, v, depth);
    case '[':
        return parse_array(p, v, depth);
    default:
        return parse_number(p, v);
    }
}

int tg_json_parse(const char *text, size_t len, struct tg_arena *arena, size_t max_depth,
                  struct tg_jval **out, struct tg_json_error *err)
{
    struct parser p = {.s = text, .len = len, .a = arena, .max_depth = max_depth, .err = err};
    struct tg_jval *root = TG_ARENA_NEW(arena, struct tg_jval);

    int rv;
    skip_ws(&p);
    if (peek(&p) == 0)
        return fail(&p, "The document is empty.", p.pos);
    rv = parse_value(&p, root, 1);
    free(p.stk);
    if (rv != 0)
        return -1;
    *out = root; /* anything after the first value is ignored (TF Serving >= 2.18) */
    return 0;
}

const struct tg_jval *tg_json_get(const struct tg_jval *obj, const char *key, size_t klen)
{
    if (obj == NULL || obj->type != TG_JOBJECT)
        return NULL;
    for (uint32_t i = 0; i < obj->len; i++) {
        const struct tg_jmember *m = &obj->u.members[i];
        if (m->key_len == klen && memcmp(m->key, key, klen) == 0)
            return &m->val;
    }
    return NULL;
}

double tg_json_number(const struct tg_jval *v)
{
    switch (v->num) {
    case TG_JNUM_INT:
        return (double)v->u.i64;
    case TG_JNUM_UINT:
        return (double)v->u.u64;
    default:
        return v->u.d;
    }
}

const char *tg_json_type_name(const struct tg_jval *v)
{
    static const char *const names[] = {"Null",  "False",  "True",  "Object",
                                        "Array", "String", "Number"};
    return names[v->type];
}

/* ---- RapidJSON's number and value printing, for error messages ---- */

size_t tg_json_format_double(double d, char *out)
{
    char digits[32], tmp[40];
    int n = 0, k;
    size_t o = 0;

    if (signbit(d)) {
        out[o++] = '-';
        d = -d;
    }
    if (d == 0) {
        memcpy(out + o, "0.0", 4);
        return o + 3;
    }
    /* the shortest digits that read back as |d| (what Grisu2 finds for nearly every value) */
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof(tmp), "%.*e", prec - 1, d);
        if (strtod_l(tmp, NULL, c_locale()) == d)
            break;
    }
    /* tmp is "D.DDDDe+XX": split into digits and a decimal exponent */
    int e10 = atoi(strchr(tmp, 'e') + 1);
    for (const char *c = tmp; *c && *c != 'e'; c++) {
        if (*c != '.')
            digits[n++] = *c;
    }
    while (n > 1 && digits[n - 1] == '0')
        n--;
    digits[n] = '\0';
    k = e10 - (n - 1); /* value = digits * 10^k */
    int kk = n + k;
    if (k >= 0 && kk <= 21) {
        memcpy(out + o, digits, (size_t)n);
        o += (size_t)n;
        for (int i = 0; i < k; i++)
            out[o++] = '0';
        out[o++] = '.';
        out[o++] = '0';
    } else if (kk > 0 && kk <= 21) {
        memcpy(out + o, digits, (size_t)kk);
        o += (size_t)kk;
        out[o++] = '.';
        memcpy(out + o, digits + kk, (size_t)(n - kk));
        o += (size_t)(n - kk);
    } else if (kk > -6 && kk <= 0) {
        out[o++] = '0';
        out[o++] = '.';
        for (int i = 0; i < -kk; i++)
            out[o++] = '0';
        memcpy(out + o, digits, (size_t)n);
        o += (size_t)n;
    } else {
        out[o++] = digits[0];
        if (n > 1) {
            out[o++] = '.';
            memcpy(out + o, digits + 1, (size_t)(n - 1));
            o += (size_t)(n - 1);
        }
        o += (size_t)snprintf(out + o, 16, "e%d", kk - 1);
    }
    out[o] = '\0';
    return o;
}

#define DEBUG_CAP 256

struct dbuf {
    char b[DEBUG_CAP + 1];
    size_t n;
};

static void dput(struct dbuf *d, const char *s, size_t len)
{
    size_t room = DEBUG_CAP - d->n;
    if (len > room)
        len = room;
    memcpy(d->b + d->n, s, len);
    d->n += len;
}

static void dputs(struct dbuf *d, const char *s)
{
    dput(d, s, strlen(s));
}

static void dstring(struct dbuf *d, const char *s, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    dput(d, "\"", 1);
    for (size_t i = 0; i < len && d->n < DEBUG_CAP; i++) {
        unsigned char c = (unsigned char)s[i];
        char e[7];
        switch (c) {
        case '"':
            dput(d, "\\\"", 2);
            break;
        case '\\':
            dput(d, "\\\\", 2);
            break;
        case '\b':
            dput(d, "\\b", 2);
            break;
        case '\f':
            dput(d, "\\f", 2);
            break;
        case '\n':
            dput(d, "\\n", 2);
            break;
        case '\r':
            dput(d, "\\r", 2);
            break;
        case '\t':
            dput(d, "\\t", 2);
            break;
        default:
            if (c < 0x20) {
                e[0] = '\\';
                e[1] = 'u';
                e[2] = '0';
                e[3] = '0';
                e[4] = hex[c >> 4];
                e[5] = hex[c & 15];
                dput(d, e, 6);
            } else {
                dput(d, (const char *)&c, 1);
            }
        }
    }
    dput(d, "\"", 1);
}

static void indent(struct dbuf *d, int level)
{
    for (int i = 0; i < level && d->n < DEBUG_CAP; i++)
        dput(d, "    ", 4);
}

static void dvalue(struct dbuf *d, const struct tg_jval *v, int level)
{
    char num[40];
    if (d->n >= DEBUG_CAP)
        return;
    switch (v->type) {
    case TG_JNULL:
        dputs(d, "null");
        break;
    case TG_JFALSE:
        dputs(d, "false");
        break;
    case TG_JTRUE:
        dputs(d, "true");
        break;
    case TG_JSTRING:
        dstring(d, v->u.str, v->len);
        break;
    case TG_JNUMBER:
        if (v->num == TG_JNUM_INT)
            snprintf(num, sizeof(num), "%lld", (long long)v->u.i64);
        else if (v->num == TG_JNUM_UINT)
            snprintf(num, sizeof(num), "%llu", (unsigned long long)v->u.u64);
        else if (v->nonfinite || !isfinite(v->u.d))
            num[0] = '\0'; /* RapidJSON's writer refuses NaN and Inf: nothing is printed */
        else
            tg_json_format_double(v->u.d, num);
        dputs(d, num);
        break;
    case TG_JARRAY: /* single-line arrays (kFormatSingleLineArray) */
        dput(d, "[", 1);
        for (uint32_t i = 0; i < v->len && d->n < DEBUG_CAP; i++) {
            if (i)
                dput(d, ", ", 2);
            dvalue(d, &v->u.items[i], level + 1);
        }
        dput(d, "]", 1);
        break;
    case TG_JOBJECT:
        dput(d, "{", 1);
        for (uint32_t i = 0; i < v->len && d->n < DEBUG_CAP; i++) {
            dput(d, i ? ",\n" : "\n", i ? 2 : 1);
            indent(d, level + 1);
            dstring(d, v->u.members[i].key, v->u.members[i].key_len);
            dput(d, ": ", 2);
            dvalue(d, &v->u.members[i].val, level + 1);
        }
        if (v->len > 0) {
            dput(d, "\n", 1);
            indent(d, level);
        }
        dput(d, "}", 1);
        break;
    }
}

const char *tg_json_debug(const struct tg_jval *v, struct tg_arena *arena)
{
    struct dbuf d;
    d.n = 0;
    dvalue(&d, v, 0);
    return tg_arena_strndup(arena, d.b, d.n);
}
