/*
 * jwks.c - see jwks.h.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <jansson.h>

#include "tfgate/common.h"
#include "tfgate/config.h"
#include "tfgate/jwks.h"
#include "tfgate/jwt.h"
#include "tfgate/log.h"

#define MAX_SET_BYTES    (1 << 20)
#define FETCH_TIMEOUT_MS 5000

struct tg_jwks {
    const struct tg_auth_provider_cfg *pc;
    pthread_mutex_t mu; /* everything below but the fetcher's bookkeeping */
    struct tg_jwt_keyset *keys;
    char *file_text; /* the file's last good content */
    size_t file_len;
    char *uri_text; /* the URI's last good answer */
    size_t uri_len;
    char *merged; /* the current set as one JSON text: tells whether a rebuild changed it */
    atomic_int refetch;
    struct tg_jwks_fetcher *fetcher;
    uint64_t next_ms, last_ms; /* the fetcher thread's */
};

struct tg_jwks_fetcher {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    int stop;
    struct tg_jwks **sets;
    size_t n;
    void (*changed)(void *arg);
    void *arg;
};

/* Appends the keys of one JWK set text (or one JWK) to |all|. */
static int add_keys(json_t *all, const char *text, size_t len, const char *origin, char *err,
                    size_t errlen)
{
    json_error_t jerr;
    json_t *doc = json_loadb(text, len, 0, &jerr), *keys;
    if (doc == NULL) {
        snprintf(err, errlen, "%s: not JSON (line %d: %s)", origin, jerr.line,
                 tg_json_error_text(jerr.text));
        return -1;
    }
    keys = json_is_object(doc) ? json_object_get(doc, "keys") : NULL;
    if (keys != NULL && json_is_array(keys))
        json_array_extend(all, keys);
    else
        json_array_append(all, doc);
    json_decref(doc);
    return 0;
}

/* Builds the set from the inline keys, |file| and |uri| texts (NULL: none). Returns 1 with
 * the new set in place when it differs, 0 when unchanged or when there is nothing to build
 * yet, -1 with |err| when it does not load (the old set stays). Called with j->mu free. */
static int rebuild(struct tg_jwks *j, const char *file, size_t file_len, const char *uri,
                   size_t uri_len, char *err, size_t errlen)
{
    const struct tg_auth_provider_cfg *pc = j->pc;
    json_t *all = json_array();
    char kerr[256];
    int rv = -1;

    if ((pc->jwks_inline &&
         add_keys(all, pc->jwks_inline, strlen(pc->jwks_inline), "keys", kerr, sizeof(kerr))) ||
        (file && add_keys(all, file, file_len, pc->jwks_file, kerr, sizeof(kerr))) ||
        (uri && add_keys(all, uri, uri_len, pc->jwks_uri, kerr, sizeof(kerr)))) {
        snprintf(err, errlen, "provider '%s': %s", pc->name, kerr);
        goto out;
    }
    if (json_array_size(all) == 0 && pc->jwks_uri != NULL && uri == NULL) {
        rv = 0; /* only a URI, not fetched yet */
        goto out;
    }
    json_t *set = json_pack("{sO}", "keys", all);
    char *text = json_dumps(set, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(set);
    struct tg_jwt_keyset *ks;
    if (tg_jwt_keyset_parse(text, strlen(text), pc->algorithms, &ks, kerr, sizeof(kerr)) != 0) {
        snprintf(err, errlen, "provider '%s': %s", pc->name, kerr);
        free(text);
        goto out;
    }
    pthread_mutex_lock(&j->mu);
    if (j->merged != NULL && strcmp(j->merged, text) == 0) {
        pthread_mutex_unlock(&j->mu);
        tg_jwt_keyset_unref(ks);
        free(text);
        rv = 0;
        goto out;
    }
    struct tg_jwt_keyset *old = j->keys;
    j->keys = ks;
    free(j->merged);
    j->merged = text;
    pthread_mutex_unlock(&j->mu);
    tg_jwt_keyset_unref(old); /* verifications still using it hold their own reference */
    rv = 1;
out:
    json_decref(all);
    return rv;
}

struct tg_jwks *tg_jwks_new(const struct tg_auth_provider_cfg *pc, struct tg_jwks *prev, char *err,
                            size_t errlen)
{
    struct tg_jwks *j = tg_xcalloc(1, sizeof(*j));
    j->pc = pc;
    pthread_mutex_init(&j->mu, NULL);
    if (pc->jwks_file != NULL &&
        (j->file_text = tg_read_file(pc->jwks_file, MAX_SET_BYTES, &j->file_len)) == NULL) {
        snprintf(err, errlen, "provider '%s': cannot read %s (missing, or over 1 MiB)", pc->name,
                 pc->jwks_file);
        tg_jwks_free(j);
        return NULL;
    }
    if (rebuild(j, j->file_text, j->file_len, NULL, 0, err, errlen) < 0) {
        tg_jwks_free(j);
        return NULL;
    }
    /* a reload: the URI's last good set, so requests need not wait for the next fetch */
    if (prev != NULL && pc->jwks_uri != NULL && prev->pc->jwks_uri != NULL &&
        strcmp(pc->jwks_uri, prev->pc->jwks_uri) == 0) {
        pthread_mutex_lock(&prev->mu);
        char *uri = prev->uri_text ? tg_xstrndup(prev->uri_text, prev->uri_len) : NULL;
        size_t uri_len = prev->uri_len;
        pthread_mutex_unlock(&prev->mu);
        char ignored[256];
        if (uri != NULL &&
            rebuild(j, j->file_text, j->file_len, uri, uri_len, ignored, sizeof(ignored)) >= 0) {
            j->uri_text = uri; /* no fetcher runs yet */
            j->uri_len = uri_len;
            uri = NULL;
        }
        free(uri);
    }
    return j;
}

void tg_jwks_free(struct tg_jwks *j)
{
    if (j == NULL)
        return;
    tg_jwt_keyset_unref(j->keys);
    free(j->file_text);
    free(j->uri_text);
    free(j->merged);
    pthread_mutex_destroy(&j->mu);
    free(j);
}

struct tg_jwt_keyset *tg_jwks_get(struct tg_jwks *j)
{
    pthread_mutex_lock(&j->mu);
    struct tg_jwt_keyset *ks = j->keys;
    if (ks != NULL)
        tg_jwt_keyset_ref(ks);
    pthread_mutex_unlock(&j->mu);
    return ks;
}

void tg_jwks_want_refresh(struct tg_jwks *j)
{
    struct tg_jwks_fetcher *f = j->fetcher;
    if (f == NULL || atomic_exchange(&j->refetch, 1) == 1)
        return;
    pthread_mutex_lock(&f->mu);
    pthread_cond_signal(&f->cond);
    pthread_mutex_unlock(&f->mu);
}

/* ---- the fetcher ---- */

struct answer {
    char *p;
    size_t n;
};

static size_t on_data(char *data, size_t size, size_t nmemb, void *user)
{
    struct answer *a = user;
    size_t len = size * nmemb;
    if (a->n + len > MAX_SET_BYTES)
        return 0; /* aborts the transfer */
    a->p = tg_xrealloc(a->p, a->n + len + 1);
    memcpy(a->p + a->n, data, len);
    a->n += len;
    return len;
}

/* GET the provider's URI over HTTPS. Returns the body, or NULL with |err|. */
static char *fetch(const struct tg_auth_provider_cfg *pc, size_t *len, char *err, size_t errlen)
{
    struct answer a = {0};
    long status = 0;
    CURL *c = curl_easy_init();
    if (c == NULL) {
        snprintf(err, errlen, "curl_easy_init failed");
        return NULL;
    }
    curl_easy_setopt(c, CURLOPT_URL, pc->jwks_uri);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "https");
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, 3L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)FETCH_TIMEOUT_MS);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "tfgate-jwks");
    if (pc->jwks_ca != NULL)
        curl_easy_setopt(c, CURLOPT_CAINFO, pc->jwks_ca);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &a);
    CURLcode rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    if (rc != CURLE_OK || status != 200) {
        if (rc != CURLE_OK)
            snprintf(err, errlen, "%s", curl_easy_strerror(rc));
        else
            snprintf(err, errlen, "HTTP status %ld", status);
        free(a.p);
        return NULL;
    }
    if (a.p == NULL)
        a.p = tg_xstrdup("");
    a.p[a.n] = '\0';
    *len = a.n;
    return a.p;
}

/* One fetch of |j|'s URI; the keys are swapped when it loads. Returns 0 or -1. */
static int fetch_once(struct tg_jwks_fetcher *f, struct tg_jwks *j)
{
    char err[512];
    size_t len = 0;
    char *text = fetch(j->pc, &len, err, sizeof(err));
    if (text == NULL) {
        tg_log(TG_LOG_WARN, "auth", "provider '%s': fetching %s: %s; keeping the last good keys",
               j->pc->name, j->pc->jwks_uri, err);
        return -1;
    }
    pthread_mutex_lock(&j->mu);
    char *file = j->file_text ? tg_xstrndup(j->file_text, j->file_len) : NULL;
    size_t file_len = j->file_len;
    pthread_mutex_unlock(&j->mu);
    int rv = rebuild(j, file, file_len, text, len, err, sizeof(err));
    free(file);
    if (rv < 0) {
        tg_log(TG_LOG_WARN, "auth", "%s (from %s); keeping the last good keys", err,
               j->pc->jwks_uri);
        free(text);
        return -1;
    }
    pthread_mutex_lock(&j->mu);
    free(j->uri_text);
    j->uri_text = text;
    j->uri_len = len;
    pthread_mutex_unlock(&j->mu);
    if (rv == 1) {
        struct tg_jwt_keyset *ks = tg_jwks_get(j);
        tg_log(TG_LOG_INFO, "auth", "provider '%s': %zu key(s) from %s", j->pc->name,
               ks ? tg_jwt_keyset_size(ks) : 0, j->pc->jwks_uri);
        tg_jwt_keyset_unref(ks);
        f->changed(f->arg);
    }
    return 0;
}

static void *fetch_main(void *arg)
{
    struct tg_jwks_fetcher *f = arg;
    pthread_mutex_lock(&f->mu);
    while (!f->stop) {
        uint64_t now = tg_mono_ms(), wake = now + 3600 * 1000;
        for (size_t i = 0; i < f->n && !f->stop; i++) {
            struct tg_jwks *j = f->sets[i];
            uint64_t min_gap = (uint64_t)j->pc->jwks_min_refresh_s * 1000;
            int asked = atomic_load(&j->refetch) && now >= j->last_ms + min_gap;
            if (now >= j->next_ms || asked) {
                atomic_store(&j->refetch, 0);
                pthread_mutex_unlock(&f->mu); /* the network, without the lock */
                int ok = fetch_once(f, j) == 0;
                pthread_mutex_lock(&f->mu);
                now = tg_mono_ms();
                j->last_ms = now;
                j->next_ms = now + (ok ? (uint64_t)j->pc->jwks_refresh_s * 1000 : min_gap);
            }
            if (j->next_ms < wake)
                wake = j->next_ms;
            if (atomic_load(&j->refetch) && j->last_ms + min_gap < wake)
                wake = j->last_ms + min_gap;
        }
        if (f->stop)
            break;
        now = tg_mono_ms();
        if (wake > now) {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            uint64_t ns = (uint64_t)ts.tv_nsec + (wake - now) % 1000 * 1000000;
            ts.tv_sec += (time_t)((wake - now) / 1000 + ns / 1000000000);
            ts.tv_nsec = (long)(ns % 1000000000);
            pthread_cond_timedwait(&f->cond, &f->mu, &ts);
        }
    }
    pthread_mutex_unlock(&f->mu);
    return NULL;
}

struct tg_jwks_fetcher *tg_jwks_fetcher_start(struct tg_jwks **sets, size_t n,
                                              void (*changed)(void *arg), void *arg)
{
    size_t with_uri = 0;
    for (size_t i = 0; i < n; i++)
        with_uri += sets[i]->pc->jwks_uri != NULL;
    if (with_uri == 0)
        return NULL;
    curl_global_init(CURL_GLOBAL_DEFAULT); /* before the thread: not thread-safe */
    struct tg_jwks_fetcher *f = tg_xcalloc(1, sizeof(*f));
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&f->cond, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&f->mu, NULL);
    f->sets = tg_xcalloc(with_uri, sizeof(*f->sets));
    for (size_t i = 0; i < n; i++) {
        if (sets[i]->pc->jwks_uri != NULL) {
            f->sets[f->n++] = sets[i];
            sets[i]->fetcher = f;
        }
    }
    f->changed = changed;
    f->arg = arg;
    if (pthread_create(&f->thread, NULL, fetch_main, f) != 0) {
        tg_log(TG_LOG_ERROR, "auth", "cannot start the JWKS fetcher thread");
        abort(); /* at start, before serving: nothing to roll back */
    }
    return f;
}

void tg_jwks_fetcher_stop(struct tg_jwks_fetcher *f)
{
    if (f == NULL)
        return;
    pthread_mutex_lock(&f->mu);
    f->stop = 1;
    pthread_cond_signal(&f->cond);
    pthread_mutex_unlock(&f->mu);
    pthread_join(f->thread, NULL); /* a fetch in progress ends within its 5 s timeout */
    for (size_t i = 0; i < f->n; i++)
        f->sets[i]->fetcher = NULL;
    pthread_cond_destroy(&f->cond);
    pthread_mutex_destroy(&f->mu);
    free(f->sets);
    free(f);
    curl_global_cleanup();
}
