/*
 * standalone.c - runs a libFuzzer-style target without libFuzzer, so the fuzzers run in the
 * test suite with gcc and the sanitizer build.
 *
 *   fuzz_x [--seconds S] [--runs N] [--seed K] DIR|FILE...
 *
 * Replays every file given (or every file in each directory given), then mutates them for at
 * most S seconds and N runs: byte flips, insertions of JSON tokens, deletions, truncation and
 * splices of two inputs. Deterministic for a seed; prints the seed and the number of runs so
 * a failure can be reproduced. A crash or sanitizer report fails the test by itself.
 */
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_MAX_INPUT 65536
#define MAX_CORPUS     4096

struct corpus {
    uint8_t *data[MAX_CORPUS];
    size_t len[MAX_CORPUS];
    size_t n;
};

static uint64_t rng;

/* The input being run, written to ./fuzz-crash.bin if it kills the process. */
static const uint8_t *current;
static size_t current_len;

static void on_crash(int sig)
{
    int fd = open("fuzz-crash.bin", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
        ssize_t w = write(fd, current, current_len);
        (void)w;
        close(fd);
    }
    static const char msg[] = "fuzz: crashing input written to fuzz-crash.bin\n";
    ssize_t w = write(2, msg, sizeof(msg) - 1);
    (void)w;
    signal(sig, SIG_DFL);
    raise(sig);
}

static void run_one(const uint8_t *data, size_t len)
{
    current = data;
    current_len = len;
    LLVMFuzzerTestOneInput(data, len);
}
static uint64_t rnd(void)
{
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 0x2545f4914f6cdd1dull;
}

static void add_file(struct corpus *c, const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f || c->n == MAX_CORPUS) {
        if (f)
            fclose(f);
        return;
    }
    uint8_t *b = malloc(FUZZ_MAX_INPUT);
    size_t n = fread(b, 1, FUZZ_MAX_INPUT, f);
    fclose(f);
    c->data[c->n] = b;
    c->len[c->n++] = n;
}

static void add_path(struct corpus *c, const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        fprintf(stderr, "fuzz: cannot read %s\n", path);
        exit(2);
    }
    if (!S_ISDIR(st.st_mode)) {
        add_file(c, path);
        return;
    }
    DIR *d = opendir(path);
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char full[4096];
        snprintf(full, sizeof(full), "%s/%s", path, e->d_name);
        add_file(c, full);
    }
    if (d)
        closedir(d);
}

static const char *tokens[] = {"[",
                               "]",
                               "{",
                               "}",
                               ",",
                               ":",
                               "\"",
                               "\\u0000",
                               "1e308",
                               "-0.0",
                               "NaN",
                               "-Infinity",
                               "9223372036854775808",
                               "1.5",
                               "true",
                               "null",
                               "\"b64\"",
                               "\"instances\"",
                               "\"inputs\"",
                               "\"signature_name\"",
                               "\"examples\"",
                               "[[1],[2,3]]",
                               "0.1",
                               "\xff",
                               "\xc3\x28",
                               "  ",
                               "[]",
                               "{}",
                               "\"x\"",
                               "\"y\""};

/* One mutation of |b| (|*n| bytes, room for FUZZ_MAX_INPUT), sometimes splicing |other|. */
static void mutate(uint8_t *b, size_t *n, const uint8_t *other, size_t on)
{
    size_t pos = *n ? rnd() % (*n + 1) : 0;
    switch (rnd() % 6) {
    case 0: /* flip a byte (never byte 0 alone: it picks the signature) */
        if (*n)
            b[rnd() % *n] ^= (uint8_t)(1u << (rnd() % 8));
        break;
    case 1: { /* insert a token */
        const char *t = tokens[rnd() % (sizeof(tokens) / sizeof(tokens[0]))];
        size_t tl = strlen(t);
        if (*n + tl <= FUZZ_MAX_INPUT) {
            memmove(b + pos + tl, b + pos, *n - pos);
            memcpy(b + pos, t, tl);
            *n += tl;
        }
        break;
    }
    case 2: /* delete a run */
        if (pos < *n) {
            size_t k = 1 + rnd() % 8;
            if (k > *n - pos)
                k = *n - pos;
            memmove(b + pos, b + pos + k, *n - pos - k);
            *n -= k;
        }
        break;
    case 3: /* truncate */
        *n = pos;
        break;
    case 4: { /* splice: our head, the other's tail */
        size_t op = on ? rnd() % on : 0;
        size_t k = on - op;
        if (pos + k > FUZZ_MAX_INPUT)
            k = FUZZ_MAX_INPUT - pos;
        memcpy(b + pos, other + op, k);
        *n = pos + k;
        break;
    }
    default: /* a new signature selector */
        if (*n)
            b[0] = (uint8_t)rnd();
        break;
    }
}

int main(int argc, char **argv)
{
    double seconds = 10;
    long runs = 1000000;
    uint64_t seed = 1;
    static struct corpus c;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc)
            seconds = atof(argv[++i]);
        else if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc)
            runs = atol(argv[++i]);
        else if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc)
            seed = strtoull(argv[++i], NULL, 10);
        else
            add_path(&c, argv[i]);
    }
    if (c.n == 0) {
        fprintf(stderr, "fuzz: no inputs\n");
        return 2;
    }
    signal(SIGABRT, on_crash);
    signal(SIGSEGV, on_crash);
    signal(SIGBUS, on_crash);
    signal(SIGFPE, on_crash);
    for (size_t i = 0; i < c.n; i++)
        run_one(c.data[i], c.len[i]);
    printf("fuzz: replayed %zu inputs\n", c.n);

    rng = seed * 0x9e3779b97f4a7c15ull + 1;
    uint8_t *b = malloc(FUZZ_MAX_INPUT);
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    long done = 0;
    for (; done < runs; done++) {
        if ((done & 63) == 0) {
            clock_gettime(CLOCK_MONOTONIC, &t);
            if ((double)(t.tv_sec - t0.tv_sec) + (double)(t.tv_nsec - t0.tv_nsec) / 1e9 > seconds)
                break;
        }
        size_t k = rnd() % c.n, n = c.len[k];
        memcpy(b, c.data[k], n);
        int m = 1 + (int)(rnd() % 4);
        for (int j = 0; j < m; j++) {
            size_t o = rnd() % c.n;
            mutate(b, &n, c.data[o], c.len[o]);
        }
        run_one(b, n);
    }
    printf("fuzz: seed %llu, %ld mutated runs, no failures\n", (unsigned long long)seed, done);
    free(b);
    for (size_t i = 0; i < c.n; i++)
        free(c.data[i]);
    return 0;
}
