/*
 * upstream_h2.h - the native transport's per-worker life cycle (the calls themselves go
 * through upstream.h). Loop thread only.
 */
#ifndef TG_UPSTREAM_H2_H
#define TG_UPSTREAM_H2_H

struct tg_worker;

/* Creates the worker's connections to every replica of every native pool and starts
 * connecting them. Before the loop runs. */
void tg_upstream_h2_worker_start(struct tg_worker *w);
/* Writes what the connections have to send; from the worker's before-sleep hook. */
void tg_upstream_h2_flush(struct tg_worker *w);
/* Closes every connection (failing calls still on them) and stops reconnecting. */
void tg_upstream_h2_worker_stop(struct tg_worker *w);
/* Frees what is left, after the loop has closed its handles. */
void tg_upstream_h2_worker_free(struct tg_worker *w);

#endif /* TG_UPSTREAM_H2_H */
