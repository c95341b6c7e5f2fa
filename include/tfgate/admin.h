/*
 * admin.h - the admin listener's handler (/metrics, /healthz, /readyz). The router gives it
 * every request that arrives on a listener marked admin, and nothing else.
 * Thread affinity: the stream's worker.
 */
#ifndef TG_ADMIN_H
#define TG_ADMIN_H

struct tg_handler;
extern const struct tg_handler tg_admin_handler;

#endif /* TG_ADMIN_H */
