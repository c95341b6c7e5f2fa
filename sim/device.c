/*
 * device.c - the simulated device's scheduler (see device.h). A single thread owns the
 * schedule; the mutex protects the queue and the running batches.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "device.h"
#include "util.h"

struct batch {
    struct batch *next; /* sorted by end_ns */
    struct sim_job *jobs;
    uint64_t end_ns;
    size_t size;
};

struct sim_device {
    struct sim_device_config cfg;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stopping;
    struct sim_job *head, *tail; /* waiting jobs */
    size_t queued;
    struct batch *running;
    size_t n_running; /* batches */
    size_t jobs_running;
    struct sim_device_stats stats;
};

int sim_device_is_passthrough(const struct sim_device *dev)
{
    const struct sim_device_config *c = &dev->cfg;
    return c->compute_us == 0 && c->per_item_us == 0 &&
           (c->kind == SIM_DEVICE_CPU || c->batch_window_us == 0) && c->queue_limit == 0;
}

static void insert_running(struct sim_device *dev, struct batch *b)
{
    struct batch **pp = &dev->running;
    while (*pp != NULL && (*pp)->end_ns <= b->end_ns)
        pp = &(*pp)->next;
    b->next = *pp;
    *pp = b;
    dev->n_running++;
    dev->jobs_running += b->size;
}

/* Starts as many batches as the free slots and the queue allow. Returns the time at which a
 * partial GPU batch becomes due, or 0. Called with the mutex held. */
static uint64_t start_batches(struct sim_device *dev, uint64_t now)
{
    const struct sim_device_config *c = &dev->cfg;

    while (dev->head != NULL && (c->concurrency == 0 || dev->n_running < c->concurrency)) {
        size_t take = 1;
        if (c->kind == SIM_DEVICE_GPU) {
            size_t max = c->max_batch ? c->max_batch : 1;
            uint64_t due = dev->head->enqueued_ns + (uint64_t)c->batch_window_us * 1000;
            if (dev->queued < max && now < due && !dev->stopping)
                return due;
            take = dev->queued < max ? dev->queued : max;
        }
        struct batch *b = sim_xcalloc(1, sizeof(*b));
        struct sim_job **tailp = &b->jobs;
        for (size_t i = 0; i < take; i++) {
            struct sim_job *j = dev->head;
            dev->head = j->next;
            j->next = NULL;
            *tailp = j;
            tailp = &j->next;
        }
        if (dev->head == NULL)
            dev->tail = NULL;
        dev->queued -= take;
        b->size = take;
        b->end_ns = now + ((uint64_t)c->compute_us + (uint64_t)c->per_item_us * take) * 1000;
        if (dev->stopping)
            b->end_ns = now;
        dev->stats.batches++;
        insert_running(dev, b);
    }
    return 0;
}

static void *device_main(void *arg)
{
    struct sim_device *dev = arg;

    pthread_mutex_lock(&dev->mu);
    for (;;) {
        uint64_t now = sim_now_ns();
        struct sim_job *finished = NULL;

        /* collect finished batches */
        while (dev->running != NULL && dev->running->end_ns <= now) {
            struct batch *b = dev->running;
            dev->running = b->next;
            dev->n_running--;
            dev->jobs_running -= b->size;
            struct sim_job *j = b->jobs;
            while (j != NULL) {
                struct sim_job *next = j->next;
                j->next = finished;
                finished = j;
                j = next;
            }
            free(b);
        }
        uint64_t due = start_batches(dev, now);

        if (finished != NULL) {
            /* counted before the answers go out: a client that has its answer and then reads
             * the stats must see its call completed */
            for (struct sim_job *j = finished; j != NULL; j = j->next)
                dev->stats.completed++;
            /* callbacks start gRPC batches; never call them with the lock held */
            pthread_mutex_unlock(&dev->mu);
            while (finished != NULL) {
                struct sim_job *next = finished->next;
                finished->done(finished);
                finished = next;
            }
            pthread_mutex_lock(&dev->mu);
            continue;
        }
        if (dev->stopping && dev->running == NULL && dev->head == NULL)
            break;

        uint64_t wake = dev->running ? dev->running->end_ns : 0;
        if (due && (!wake || due < wake))
            wake = due;
        if (wake == 0) {
            pthread_cond_wait(&dev->cv, &dev->mu);
        } else {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            uint64_t delta = wake > now ? wake - now : 0;
            uint64_t ns = (uint64_t)ts.tv_nsec + delta % 1000000000u;
            ts.tv_sec += (time_t)(delta / 1000000000u + ns / 1000000000u);
            ts.tv_nsec = (long)(ns % 1000000000u);
            pthread_cond_timedwait(&dev->cv, &dev->mu, &ts);
        }
    }
    pthread_mutex_unlock(&dev->mu);
    return NULL;
}

struct sim_device *sim_device_start(const struct sim_device_config *cfg)
{
    struct sim_device *dev = sim_xcalloc(1, sizeof(*dev));
    pthread_condattr_t ca;

    dev->cfg = *cfg;
    pthread_mutex_init(&dev->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&dev->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&dev->thread, NULL, device_main, dev) != 0) {
        pthread_cond_destroy(&dev->cv);
        pthread_mutex_destroy(&dev->mu);
        free(dev);
        return NULL;
    }
    return dev;
}

int sim_device_submit(struct sim_device *dev, struct sim_job *job)
{
    pthread_mutex_lock(&dev->mu);
    if (dev->stopping || (dev->cfg.queue_limit != 0 && dev->queued >= dev->cfg.queue_limit)) {
        dev->stats.rejected++;
        pthread_mutex_unlock(&dev->mu);
        return -1;
    }
    job->next = NULL;
    job->enqueued_ns = sim_now_ns();
    if (dev->tail)
        dev->tail->next = job;
    else
        dev->head = job;
    dev->tail = job;
    dev->queued++;
    if (dev->queued > dev->stats.max_queue)
        dev->stats.max_queue = dev->queued;
    pthread_cond_signal(&dev->cv);
    pthread_mutex_unlock(&dev->mu);
    return 0;
}

void sim_device_stats(struct sim_device *dev, struct sim_device_stats *out)
{
    pthread_mutex_lock(&dev->mu);
    *out = dev->stats;
    out->queued = dev->queued;
    out->running = dev->jobs_running;
    pthread_mutex_unlock(&dev->mu);
}

void sim_device_reset_stats(struct sim_device *dev)
{
    pthread_mutex_lock(&dev->mu);
    memset(&dev->stats, 0, sizeof(dev->stats));
    pthread_mutex_unlock(&dev->mu);
}

void sim_device_stop(struct sim_device *dev)
{
    pthread_mutex_lock(&dev->mu);
    dev->stopping = 1;
    /* finish what is running now rather than after its compute time */
    for (struct batch *b = dev->running; b != NULL; b = b->next)
        b->end_ns = 0;
    pthread_cond_signal(&dev->cv);
    pthread_mutex_unlock(&dev->mu);
    pthread_join(dev->thread, NULL);
}

void sim_device_free(struct sim_device *dev)
{
    if (dev == NULL)
        return;
    pthread_cond_destroy(&dev->cv);
    pthread_mutex_destroy(&dev->mu);
    free(dev);
}
