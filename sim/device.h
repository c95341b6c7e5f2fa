/*
 * device.h - a simulated inference device, so tests and benchmarks can see how a CPU or a GPU
 * TF Serving replica behaves under load.
 *
 *   cpu: every job takes |compute_us|; at most |concurrency| jobs run at once (0 = no limit);
 *        the rest wait in FIFO order.
 *   gpu: jobs are batched as TF Serving's batcher does: a batch starts when |max_batch| jobs
 *        are queued or the oldest has waited |batch_window_us|; it takes |compute_us| plus
 *        |per_item_us| per job; at most |concurrency| batches run at once. A job that finds
 *        |queue_limit| jobs already waiting is refused, and the caller answers UNAVAILABLE
 *        with the batcher's message (SIM_QUEUE_FULL_MESSAGE).
 *
 * One device thread runs the schedule. sim_device_submit may be called from any thread; job
 * callbacks run on the device thread (or inline when the device adds no delay).
 */
#ifndef SIM_DEVICE_H
#define SIM_DEVICE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define SIM_QUEUE_FULL_MESSAGE "The batch scheduling queue to which this task was submitted is full"

struct sim_job;
typedef void sim_job_done_cb(struct sim_job *job);

struct sim_job {
    struct sim_job *next; /* queue link, owned by the device while queued */
    uint64_t enqueued_ns;
    sim_job_done_cb *done; /* called once when the job's compute time has passed */
};

enum sim_device_kind {
    SIM_DEVICE_CPU = 0,
    SIM_DEVICE_GPU,
};

struct sim_device_config {
    enum sim_device_kind kind;
    uint32_t compute_us;      /* per job (cpu) or per batch (gpu) */
    uint32_t per_item_us;     /* gpu: added per job in a batch */
    uint32_t batch_window_us; /* gpu: longest wait for a batch to fill */
    uint32_t max_batch;       /* gpu: jobs per batch */
    uint32_t concurrency;     /* jobs (cpu) or batches (gpu) at once; 0 = unlimited */
    uint32_t queue_limit;     /* jobs waiting; 0 = unlimited */
};

struct sim_device_stats {
    uint64_t completed;
    uint64_t rejected;
    uint64_t batches;
    uint64_t max_queue;
    uint64_t queued;  /* now */
    uint64_t running; /* jobs being computed now */
};

struct sim_device;

/* Starts the device thread. Returns NULL if the thread cannot be started. */
struct sim_device *sim_device_start(const struct sim_device_config *cfg);
/* Returns 0 when |job| was accepted (its callback will run), -1 when the queue is full. */
int sim_device_submit(struct sim_device *dev, struct sim_job *job);
/* 1 if the device adds no delay, so callers may skip it altogether. */
int sim_device_is_passthrough(const struct sim_device *dev);
void sim_device_stats(struct sim_device *dev, struct sim_device_stats *out);
/* Zeroes the counters (not the queue). */
void sim_device_reset_stats(struct sim_device *dev);
/* Completes every queued and running job at once and stops the device thread. Later
 * submissions are refused (-1). Any thread but the device's. */
void sim_device_stop(struct sim_device *dev);
/* Frees a stopped device, once no thread can call sim_device_submit any more. */
void sim_device_free(struct sim_device *dev);

#endif /* SIM_DEVICE_H */
