/*
 * gateway.c - see gateway.h. Listeners, generations, reload and reaping; no request logic.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "tfgate/accesslog.h"
#include "tfgate/auth.h"
#include "tfgate/common.h"
#include "tfgate/config.h"
#include "tfgate/gateway.h"
#include "tfgate/log.h"
#include "tfgate/metrics.h"
#include "tfgate/pool.h"
#include "tfgate/ratelimit.h"

/* ---- listeners ---- */

/* ALPN: h2 first, then http/1.1 (clients without ALPN get HTTP/1.1 too). */
static int select_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
    (void)ssl;
    (void)arg;
    static const unsigned char protos[] = "\x02h2\x08http/1.1";
    if (SSL_select_next_proto((unsigned char **)out, outlen, protos, sizeof(protos) - 1, in,
                              inlen) != OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    return SSL_TLSEXT_ERR_OK;
}

static SSL_CTX *make_ssl_ctx(const struct tg_listen_cfg *l, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL) {
        snprintf(err, errlen, "SSL_CTX_new failed");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    if (SSL_CTX_use_certificate_chain_file(ctx, l->tls_cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, l->tls_key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        char e[256];
        ERR_error_string_n(ERR_get_error(), e, sizeof(e));
        ERR_clear_error();
        snprintf(err, errlen, "listener %s: cannot load %s / %s: %s", l->address, l->tls_cert,
                 l->tls_key, e);
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_alpn_select_cb(ctx, select_alpn, NULL);
    return ctx;
}

static struct tg_listener *open_listener(const struct tg_listen_cfg *l, const char *key, char *err,
                                         size_t errlen)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST | AI_PASSIVE};
    struct addrinfo *ai;
    char port[16], host[INET6_ADDRSTRLEN] = "";
    int fd, one = 1;

    snprintf(port, sizeof(port), "%d", l->port);
    if (getaddrinfo(l->host, port, &hints, &ai) != 0) {
        snprintf(err, errlen, "listener %s: '%s' is not a numeric address", l->address, l->host);
        return NULL;
    }
    fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    /* SO_REUSEADDR only: never SO_REUSEPORT, so a second gateway on the same port fails to
     * start instead of silently sharing the traffic */
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 1024) != 0) {
        snprintf(err, errlen, "listener %s: %s", l->address, strerror(errno));
        if (fd >= 0)
            close(fd);
        freeaddrinfo(ai);
        return NULL;
    }
    freeaddrinfo(ai);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    getsockname(fd, (struct sockaddr *)&ss, &sl);
    int bound;
    if (ss.ss_family == AF_INET6) {
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, host, sizeof(host));
        bound = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    } else {
        inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, host, sizeof(host));
        bound = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    }
    char name[INET6_ADDRSTRLEN + 16];
    snprintf(name, sizeof(name), ss.ss_family == AF_INET6 ? "[%s]:%d" : "%s:%d", host, bound);
    struct tg_listener *out = tg_xcalloc(1, sizeof(*out));
    out->fd = fd;
    out->key = tg_xstrdup(key);
    out->name = tg_xstrdup(name);
    atomic_init(&out->refs, 1);
    pthread_mutex_init(&out->mu, NULL);
    return out;
}

SSL *tg_listener_ssl_new(struct tg_listener *l)
{
    pthread_mutex_lock(&l->mu);
    SSL *ssl = l->ssl_ctx ? SSL_new(l->ssl_ctx) : NULL; /* the SSL holds its own ctx ref */
    pthread_mutex_unlock(&l->mu);
    return ssl;
}

void tg_listener_ref(struct tg_listener *l)
{
    atomic_fetch_add(&l->refs, 1);
}

void tg_listener_unref(struct tg_listener *l)
{
    if (l == NULL || atomic_fetch_sub(&l->refs, 1) != 1)
        return;
    if (l->fd >= 0)
        close(l->fd);
    SSL_CTX_free(l->ssl_ctx);
    pthread_mutex_destroy(&l->mu);
    free(l->key);
    free(l->name);
    free(l);
}

/* ---- generations ---- */

void tg_gen_ref(struct tg_gen *g)
{
    atomic_fetch_add(&g->refs, 1);
}

void tg_gen_unref(struct tg_gen *g)
{
    if (g == NULL || atomic_fetch_sub(&g->refs, 1) != 1)
        return;
    struct tg_gateway *gw = g->gw;
    pthread_mutex_lock(&gw->reap_mu);
    g->reap_next = gw->reap;
    gw->reap = g;
    pthread_mutex_unlock(&gw->reap_mu);
}

static void gen_free(struct tg_gen *g)
{
    tg_pools_unref(g->pools);
    tg_auth_free(g->auth);
    tg_ratelimit_free(g->ratelimit);
    for (size_t i = 0; i < g->n_listeners; i++)
        tg_listener_unref(g->listeners[i]);
    free(g->listeners);
    tg_config_unref(g->config);
    free(g);
}

void tg_gateway_reap(struct tg_gateway *gw)
{
    pthread_mutex_lock(&gw->reap_mu);
    struct tg_gen *g = gw->reap;
    gw->reap = NULL;
    pthread_mutex_unlock(&gw->reap_mu);
    while (g != NULL) {
        struct tg_gen *next = g->reap_next;
        tg_log(TG_LOG_DEBUG, "main", "configuration generation %llu freed",
               (unsigned long long)g->id);
        gen_free(g);
        g = next;
    }
}

static struct tg_listener *find_listener(const struct tg_gen *prev, const char *key)
{
    for (size_t i = 0; prev != NULL && i < prev->n_listeners; i++) {
        if (strcmp(prev->listeners[i]->key, key) == 0)
            return prev->listeners[i];
    }
    return NULL;
}

struct tg_gen *tg_gen_new(struct tg_gateway *gw, struct tg_config *cfg, const struct tg_gen *prev,
                          char *err, size_t errlen)
{
    struct tg_gen *g = tg_xcalloc(1, sizeof(*g));
    size_t n = cfg->n_listens + (cfg->admin_host != NULL);
    SSL_CTX **ctx = tg_xcalloc(n + 1, sizeof(*ctx)); /* the certificates, applied on success */

    atomic_init(&g->refs, 1);
    g->id = prev ? prev->id + 1 : 1;
    g->gw = gw;
    tg_config_ref(cfg);
    g->config = cfg;
    g->listeners = tg_xcalloc(n + 1, sizeof(*g->listeners));
    err[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        /* the admin listener last, so the data-plane listeners keep their order */
        int admin = i == cfg->n_listens;
        struct tg_listen_cfg al = {
            .address = "admin", .host = cfg->admin_host, .port = cfg->admin_port};
        const struct tg_listen_cfg *lc = admin ? &al : &cfg->listens[i];
        char key[300];
        /* an address and its role name a listener; TLS or not may change under the same one */
        snprintf(key, sizeof(key), "%s|%s|%d", admin ? "admin" : "data", lc->host, lc->port);
        if (lc->tls_cert != NULL && (ctx[i] = make_ssl_ctx(lc, err, errlen)) == NULL)
            goto fail;
        struct tg_listener *l = find_listener(prev, key);
        for (size_t k = 0; l != NULL && k < g->n_listeners; k++) {
            if (g->listeners[k] == l) /* "host:0" twice: two sockets */
                l = NULL;
        }
        if (l != NULL && l->fd >= 0) {
            tg_listener_ref(l); /* the same socket: its role is in the key */
        } else {
            if ((l = open_listener(lc, key, err, errlen)) == NULL)
                goto fail;
            l->admin = admin;
        }
        g->listeners[g->n_listeners++] = l;
    }
    g->pools = tg_pools_new(cfg, prev ? prev->pools : NULL, err, errlen);
    if (g->pools == NULL)
        goto fail;
    g->auth = tg_auth_new(&cfg->auth, prev ? prev->auth : NULL, err, errlen);
    if (g->auth == NULL && err[0] != '\0')
        goto fail;
    g->ratelimit = tg_ratelimit_new(&cfg->ratelimit);

    /* everything loaded: the certificates take effect for new TLS connections now */
    for (size_t i = 0; i < g->n_listeners; i++) {
        struct tg_listener *l = g->listeners[i];
        pthread_mutex_lock(&l->mu);
        SSL_CTX *old = l->ssl_ctx;
        l->ssl_ctx = ctx[i];
        l->tls = ctx[i] != NULL;
        pthread_mutex_unlock(&l->mu);
        SSL_CTX_free(old); /* connections made with it keep their own references */
    }
    free(ctx);
    return g;

fail:
    for (size_t i = 0; i < n; i++)
        SSL_CTX_free(ctx[i]);
    free(ctx);
    gen_free(g);
    return NULL;
}

static void print_listeners(const struct tg_gen *g, const struct tg_gen *prev)
{
    for (size_t i = 0; i < g->n_listeners; i++) {
        const struct tg_listener *l = g->listeners[i];
        if (find_listener(prev, l->key) == l)
            continue;
        if (l->admin)
            printf("tfgate admin listening on %s (/metrics, /healthz, /readyz)\n", l->name);
        else
            printf("tfgate listening on %s (%s)\n", l->name,
                   l->tls ? "tls: h2, http/1.1" : "http/1.1, h2c");
    }
    fflush(stdout);
}

int tg_gateway_reload(struct tg_gateway *gw, int argc, char **argv, char *err, size_t errlen)
{
    struct tg_config *cfg;
    enum tg_config_action action;
    struct tg_gen *old = gw->gen, *g;

    if (tg_config_from_args(argc, argv, &cfg, &action, err, errlen) != 0)
        return -1;
    g = tg_gen_new(gw, cfg, old, err, errlen);
    tg_config_unref(cfg); /* the generation holds it */
    if (g == NULL)
        return -1;
    /* process-wide settings */
    if (tg_access_log_switch(g->config->access_log) != 0) {
        snprintf(err, errlen, "access_log %s: %s", g->config->access_log, strerror(errno));
        tg_gen_unref(g);
        return -1;
    }
    if (g->config->workers != old->config->workers)
        tg_log(TG_LOG_WARN, "main", "reload: workers stays %zu (changing it to %u needs a restart)",
               gw->n_workers, g->config->workers);
    tg_log_set_level(g->config->log_level);

    for (size_t i = 0; i < gw->n_workers; i++)
        tg_worker_set_gen(gw->workers[i], g);
    gw->gen = g;
    print_listeners(g, old);
    tg_log(TG_LOG_INFO, "main",
           "reload: configuration %llu from %s: %zu listener(s), %zu pool(s), %zu route(s)",
           (unsigned long long)g->id, g->config->source, g->n_listeners, g->config->n_pools,
           g->config->n_routes);
    tg_gen_unref(old); /* freed once its last stream is done */
    return 0;
}

/* for main: the listening lines at start */
void tg_gateway_print_listeners(const struct tg_gen *g)
{
    print_listeners(g, NULL);
}
