/*
 * main.c - tfgate: argv, configuration, listeners, pools, workers, signals. No request logic.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <grpc/grpc.h>
#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "tfgate/accesslog.h"
#include "tfgate/auth.h"
#include "tfgate/metrics.h"
#include "tfgate/ratelimit.h"
#include "tfgate/common.h"
#include "tfgate/config.h"
#include "tfgate/log.h"
#include "tfgate/pool.h"
#include "tfgate/worker.h"

#define TFGATE_VERSION "0.1.0"

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
        snprintf(err, errlen, "listener %s: cannot load %s / %s: %s", l->address, l->tls_cert,
                 l->tls_key, e);
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_alpn_select_cb(ctx, select_alpn, NULL);
    return ctx;
}

static int open_listener(const struct tg_listen_cfg *l, struct tg_listener *out, char *err,
                         size_t errlen)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST | AI_PASSIVE};
    struct addrinfo *ai;
    char port[16], host[INET6_ADDRSTRLEN] = "";
    int fd, one = 1;

    snprintf(port, sizeof(port), "%d", l->port);
    if (getaddrinfo(l->host, port, &hints, &ai) != 0) {
        snprintf(err, errlen, "listener %s: '%s' is not a numeric address", l->address, l->host);
        return -1;
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
        return -1;
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
    out->fd = fd;
    out->name = tg_xstrdup(name);
    out->ssl_ctx = NULL;
    if (l->tls_cert != NULL && (out->ssl_ctx = make_ssl_ctx(l, err, errlen)) == NULL) {
        close(fd);
        free(out->name);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct tg_config *cfg = NULL;
    enum tg_config_action action;
    struct tg_gateway gw = {0};
    char err[1024];
    sigset_t sigs;
    int sig, status = 0;

    if (tg_config_from_args(argc, argv, &cfg, &action, err, sizeof(err)) != 0) {
        fprintf(stderr, "tfgate: %s\n", err);
        return 2;
    }
    if (action == TG_CONFIG_HELP) {
        fputs(tg_usage, stdout);
        return 0;
    }
    if (action == TG_CONFIG_VERSION) {
        printf("tfgate %s (nghttp2 %s, gRPC core %s, %s)\n", TFGATE_VERSION,
               nghttp2_version(0)->version_str, grpc_version_string(),
               OpenSSL_version(OPENSSL_VERSION));
        return 0;
    }
    if (action == TG_CONFIG_CHECK) {
        printf("tfgate: %s: configuration OK (%zu listener(s), %zu pool(s), %zu route(s))\n",
               cfg->source, cfg->n_listens, cfg->n_pools, cfg->n_routes);
        tg_config_unref(cfg);
        return 0;
    }
    tg_log_level = cfg->log_level;

    /* Block the signals before any thread exists, so only sigwait() below receives them. */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    gw.config = cfg;
    gw.listeners = tg_xcalloc(cfg->n_listens + 1, sizeof(*gw.listeners));
    for (size_t i = 0; i < cfg->n_listens; i++) {
        if (open_listener(&cfg->listens[i], &gw.listeners[i], err, sizeof(err)) != 0) {
            fprintf(stderr, "tfgate: %s\n", err);
            status = 1;
            goto out_listeners;
        }
        gw.n_listeners++;
    }
    if (cfg->admin_host != NULL) { /* last, so the data-plane listeners keep their order */
        struct tg_listen_cfg al = {
            .address = "admin", .host = cfg->admin_host, .port = cfg->admin_port};
        if (open_listener(&al, &gw.listeners[gw.n_listeners], err, sizeof(err)) != 0) {
            fprintf(stderr, "tfgate: admin: %s\n", err);
            status = 1;
            goto out_listeners;
        }
        gw.listeners[gw.n_listeners++].admin = 1;
    }

    tg_log_capture_grpc();
    grpc_init();
    if (cfg->access_log != NULL && tg_access_log_open(cfg->access_log) != 0) {
        fprintf(stderr, "tfgate: access_log %s: %s\n", cfg->access_log, strerror(errno));
        status = 1;
        goto out_grpc;
    }
    gw.auth = tg_auth_new(&cfg->auth, err, sizeof(err));
    if (gw.auth == NULL && err[0] != '\0') {
        fprintf(stderr, "tfgate: %s\n", err);
        status = 1;
        goto out_grpc;
    }
    gw.ratelimit = tg_ratelimit_new(&cfg->ratelimit);
    gw.pools = tg_pools_new(cfg, err, sizeof(err));
    if (gw.pools == NULL) {
        fprintf(stderr, "tfgate: %s\n", err);
        status = 1;
        goto out_grpc;
    }
    gw.workers = tg_xcalloc(cfg->workers, sizeof(*gw.workers));
    for (uint32_t i = 0; i < cfg->workers; i++) {
        gw.workers[i] = tg_worker_new(&gw, (int)i);
        gw.n_workers++;
        if (tg_worker_start(gw.workers[i]) != 0) {
            fprintf(stderr, "tfgate: cannot start worker %u\n", i);
            abort(); /* threads cannot be rolled back cleanly; nothing was served yet */
        }
    }
    for (size_t i = 0; i < gw.n_listeners; i++) {
        if (gw.listeners[i].admin)
            printf("tfgate admin listening on %s (/metrics, /healthz, /readyz)\n",
                   gw.listeners[i].name);
        else
            printf("tfgate listening on %s (%s)\n", gw.listeners[i].name,
                   gw.listeners[i].ssl_ctx ? "tls: h2, http/1.1" : "http/1.1, h2c");
    }
    fflush(stdout);
    tg_log(TG_LOG_INFO, "main", "tfgate %s: %zu worker(s), %zu pool(s)", TFGATE_VERSION,
           gw.n_workers, cfg->n_pools);

    for (;;) {
        if (sigwait(&sigs, &sig) != 0)
            continue;
        if (sig == SIGHUP) {
            if (tg_access_log_reopen() != 0)
                tg_log(TG_LOG_WARN, "main", "SIGHUP: access_log %s: %s; still writing the old file",
                       cfg->access_log, strerror(errno));
            /* key files now; the rest of the configuration is not reloaded yet */
            if (gw.auth != NULL && tg_auth_reload(gw.auth, err, sizeof(err)) != 0) {
                tg_log(TG_LOG_WARN, "main", "SIGHUP: %s", err);
                tg_metrics_event(TG_EV_RELOAD_FAILED);
            } else {
                tg_log(TG_LOG_INFO, "main", "SIGHUP: %s",
                       gw.auth ? "key sets reloaded" : "nothing to reload");
                tg_metrics_event(TG_EV_RELOAD_OK);
            }
            continue;
        }
        break;
    }
    tg_log(TG_LOG_INFO, "main", "signal %d: draining (up to %u ms)", sig,
           cfg->limits.drain_timeout_ms);
    for (size_t i = 0; i < gw.n_workers; i++)
        tg_worker_drain(gw.workers[i]);
    /* Close the listening sockets as soon as no worker polls them, so new connections are
     * refused at once instead of waiting in the backlog (bounded wait: 2 s). */
    for (int i = 0; i < 2000 && atomic_load(&gw.listeners_released) < (int)gw.n_workers; i++)
        usleep(1000);
    for (size_t i = 0; i < gw.n_listeners; i++) {
        close(gw.listeners[i].fd);
        gw.listeners[i].fd = -1;
    }
    for (size_t i = 0; i < gw.n_workers; i++)
        tg_worker_join_free(gw.workers[i]);
    free(gw.workers);
    tg_log(TG_LOG_INFO, "main", "stopped");
    tg_pools_free(gw.pools);
out_grpc:
    tg_access_log_close();
    tg_ratelimit_free(gw.ratelimit);
    tg_auth_free(gw.auth);
    grpc_shutdown();
out_listeners:
    for (size_t i = 0; i < gw.n_listeners; i++) {
        if (gw.listeners[i].fd >= 0)
            close(gw.listeners[i].fd);
        SSL_CTX_free(gw.listeners[i].ssl_ctx);
        free(gw.listeners[i].name);
    }
    free(gw.listeners);
    tg_config_unref(cfg);
    return status;
}
