/*
 * upstream_h2.h - the native transport's per-worker life cycle (the calls themselves go
 * through upstream.h). Loop thread only.
 */
#ifndef TG_UPSTREAM_H2_H
#define TG_UPSTREAM_H2_H

struct h2up;
struct tg_gen;
struct tg_worker;

/* Creates the worker's connections to every replica of every native pool of |gen| and starts
 * connecting them: one set per set of pools (worker.h, struct tg_wgen; generations that keep
 * the pools share it). One user. Never NULL. */
struct h2up *tg_upstream_h2_new(struct tg_worker *w, struct tg_gen *gen);
/* A reload kept the pools (tg_pools_same): |up| serves |gen| too (one more user) and takes
 * its limits. */
void tg_upstream_h2_share(struct h2up *up, struct tg_gen *gen);
/* A worker generation is done with |up|: the last one closes every connection (failing calls
 * still on them), stops reconnecting, and frees it all once the loop has closed its handles.
 * NULL: no-op. */
void tg_upstream_h2_release(struct h2up *up);
/* Writes what the connections have to send; from the worker's before-sleep hook. NULL: no-op */
void tg_upstream_h2_flush(struct h2up *up);

#endif /* TG_UPSTREAM_H2_H */
