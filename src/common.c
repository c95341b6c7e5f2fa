/*
 * common.c - aborting allocators (see common.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tfgate/common.h"

static void oom(size_t n)
{
    fprintf(stderr, "tfgate: out of memory allocating %zu bytes\n", n);
    abort();
}

void *tg_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (p == NULL)
        oom(n);
    return p;
}

void *tg_xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (p == NULL)
        oom(n * size);
    return p;
}

void *tg_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (q == NULL)
        oom(n);
    return q;
}

char *tg_xstrdup(const char *s)
{
    return tg_xstrndup(s, strlen(s));
}

char *tg_xstrndup(const char *s, size_t n)
{
    char *p = tg_xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

uint64_t tg_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint64_t tg_hash64(const void *data, size_t n)
{
    const uint8_t *p = data;
    uint64_t h = 0xcbf29ce484222325u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3u;
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9u;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebu;
    return h ^ (h >> 31);
}

uint64_t tg_random64(void)
{
    static _Thread_local uint64_t state;
    if (state == 0) {
        FILE *f = fopen("/dev/urandom", "rb");
        if (f == NULL || fread(&state, sizeof(state), 1, f) != 1)
            state = tg_mono_ms() ^ (uint64_t)(uintptr_t)&state;
        if (f)
            fclose(f);
        state |= 1;
    }
    uint64_t z = (state += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

char *tg_read_file(const char *path, size_t max, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t n = 0, cap = 0, r;
    if (f == NULL)
        return NULL;
    do {
        if (n == cap) {
            if (cap > max) {
                free(buf);
                fclose(f);
                errno = EFBIG;
                return NULL;
            }
            cap = cap ? cap * 2 : 16384;
            buf = tg_xrealloc(buf, cap + 1);
        }
        r = fread(buf + n, 1, cap - n, f);
        n += r;
    } while (r > 0);
    fclose(f);
    if (n > max) {
        free(buf);
        errno = EFBIG;
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

int tg_log_file_open(const char *path, int std_fd)
{
    if (strcmp(path, "-") == 0)
        return dup(std_fd);
    return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
}

int tg_log_file_reopen(int fd, const char *path, int std_fd)
{
    int nfd = tg_log_file_open(path, std_fd);
    if (nfd < 0)
        return -1;
    int rv = dup2(nfd, fd) < 0 ? -1 : 0;
    int e = errno;
    close(nfd);
    errno = e;
    return rv;
}

char *tg_json_error_text(char *text)
{
    char *near = strstr(text, " near '");
    if (near != NULL)
        *near = '\0';
    return text;
}
