/*
 * main.c - tfgate: argv, the first generation (gateway.h), workers, signals. No request logic.
 *
 *   SIGHUP           reload the configuration (gateway.h); log files are reopened either way
 *   SIGTERM, SIGINT  drain (worker.h) and exit 0
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <grpc/grpc.h>
#include <nghttp2/nghttp2.h>
#include <openssl/crypto.h>

#include "tfgate/accesslog.h"
#include "tfgate/auth.h"
#include "tfgate/common.h"
#include "tfgate/config.h"
#include "tfgate/gateway.h"
#include "tfgate/log.h"
#include "tfgate/metrics.h"
#include "tfgate/worker.h"

#define TFGATE_VERSION "0.1.0"

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
    tg_log_set_level(cfg->log_level);

    /* Block the signals before any thread exists, so only sigtimedwait() below receives them. */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    pthread_mutex_init(&gw.reap_mu, NULL);
    tg_log_capture_grpc();
    grpc_init();
    if (cfg->access_log != NULL && tg_access_log_open(cfg->access_log) != 0) {
        fprintf(stderr, "tfgate: access_log %s: %s\n", cfg->access_log, strerror(errno));
        status = 1;
        goto out_grpc;
    }
    gw.gen = tg_gen_new(&gw, cfg, NULL, err, sizeof(err));
    if (gw.gen == NULL) {
        fprintf(stderr, "tfgate: %s\n", err);
        status = 1;
        goto out_grpc;
    }
    /* every worker exists before any runs: a running worker reads how many there are (its
     * share of each replica's connections) and scrapes read them all */
    gw.workers = tg_xcalloc(cfg->workers, sizeof(*gw.workers));
    for (uint32_t i = 0; i < cfg->workers; i++)
        gw.workers[gw.n_workers++] = tg_worker_new(&gw, (int)i, gw.gen);
    for (size_t i = 0; i < gw.n_workers; i++) {
        if (tg_worker_start(gw.workers[i]) != 0) {
            fprintf(stderr, "tfgate: cannot start worker %zu\n", i);
            abort(); /* threads cannot be rolled back cleanly; nothing was served yet */
        }
    }
    tg_gateway_print_listeners(gw.gen);
    tg_log(TG_LOG_INFO, "main", "tfgate %s: %zu worker(s), %zu pool(s)", TFGATE_VERSION,
           gw.n_workers, cfg->n_pools);

    /* The main thread waits for signals, and frees generations the workers let go of. */
    for (;;) {
        struct timespec tick = {.tv_sec = 0, .tv_nsec = 200 * 1000 * 1000};
        sig = sigtimedwait(&sigs, NULL, &tick);
        tg_gateway_reap(&gw);
        if (sig < 0)
            continue;
        if (sig == SIGHUP) {
            if (tg_gateway_reload(&gw, argc, argv, err, sizeof(err)) != 0) {
                tg_log(TG_LOG_ERROR, "main",
                       "reload rejected, still serving configuration %llu: %s",
                       (unsigned long long)gw.gen->id, err);
                tg_metrics_reload(0);
                if (tg_access_log_reopen() != 0) /* log rotation works all the same */
                    tg_log(TG_LOG_WARN, "main", "access_log: %s; still writing the old file",
                           strerror(errno));
                tg_auth_reopen_audit(gw.gen->auth);
            } else {
                tg_metrics_reload(1);
            }
            continue;
        }
        break;
    }
    tg_log(TG_LOG_INFO, "main", "signal %d: draining (up to %u ms)", sig,
           gw.gen->config->limits.drain_timeout_ms);
    /* each worker stops accepting (the last one to let go of a listening socket closes it, so
     * new connections are refused at once), asks its clients to go away and finishes */
    for (size_t i = 0; i < gw.n_workers; i++)
        tg_worker_drain(gw.workers[i]);
    for (size_t i = 0; i < gw.n_workers; i++)
        tg_worker_join_free(gw.workers[i]);
    free(gw.workers);
    tg_log(TG_LOG_INFO, "main", "stopped");
out_grpc:
    tg_gen_unref(gw.gen);
    tg_gateway_reap(&gw);
    tg_access_log_close();
    grpc_shutdown();
    pthread_mutex_destroy(&gw.reap_mu);
    tg_config_unref(cfg);
    return status;
}
