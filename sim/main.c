/*
 * main.c - tfs-sim: a TensorFlow Serving stand-in for tests, demos and benchmarks.
 * Flags, model loading, signals; the work happens in server.c.
 */
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/grpc.h>

#include "models.h"
#include "server.h"
#include "tensor.h"

static const char usage[] =
    "usage: tfs-sim [options]\n"
    "A TensorFlow Serving stand-in: tensorflow.serving.PredictionService and ModelService\n"
    "over gRPC, with TF Serving's answers and error texts.\n"
    "\n"
    "  --host ADDR            address to listen on (default 127.0.0.1)\n"
    "  --port N               port; 0 picks a free one (default 8500). The bound address is\n"
    "                         printed on stdout: \"tfs-sim listening on HOST:PORT ...\"\n"
    "  --models FILE          add models from a JSON model file (docs/tfs-sim.md); a model\n"
    "                         named like a built-in one replaces it\n"
    "  --no-builtin           do not serve the built-in half_plus_two and half_plus_three\n"
    "  --device cpu|gpu       load profile (default cpu); gpu batches requests\n"
    "  --compute-us N         compute time per request (cpu) or per batch (gpu)\n"
    "                         (defaults: cpu 0, gpu 2000)\n"
    "  --per-item-us N        gpu: extra time per request in a batch (default 50)\n"
    "  --batch-window-us N    gpu: longest wait for a batch to fill (default 1000)\n"
    "  --max-batch N          gpu: requests per batch (default 32)\n"
    "  --concurrency N        requests (cpu) or batches (gpu) computed at once; 0 = no limit\n"
    "                         (defaults: cpu 0, gpu 1)\n"
    "  --queue-limit N        requests waiting; beyond it UNAVAILABLE \"" SIM_QUEUE_FULL_MESSAGE
    "\"\n"
    "                         (defaults: cpu 0 = no limit, gpu 128)\n"
    "  --threads N            completion-queue threads (default 2)\n"
    "  --tensor-content       write Predict outputs as tensor_content, like TF Serving's\n"
    "                         --enable_serialization_as_tensor_content\n"
    "  --max-tensor-bytes N   largest tensor decoded (default 1073741824)\n"
    "  --record FILE          append one JSON line per call: method, request (base64), metadata\n"
    "  --tls-cert FILE        serve TLS with this PEM certificate chain (needs --tls-key)\n"
    "  --tls-key FILE         the certificate's PEM private key\n"
    "  --help\n"
    "\n"
    "SIGTERM or SIGINT stops it cleanly (exit 0).\n";

static int parse_uint(const char *flag, const char *s, unsigned long long max,
                      unsigned long long *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (*s == '\0' || *s == '-' || *end != '\0' || errno == ERANGE || v > max) {
        fprintf(stderr, "tfs-sim: %s needs an integer from 0 to %llu, not '%s'\n", flag, max, s);
        return -1;
    }
    *out = v;
    return 0;
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t n = 0, cap = 0;

    if (f == NULL)
        return NULL;
    for (;;) {
        if (n == cap) {
            cap = cap ? cap * 2 : 65536;
            buf = sim_xrealloc(buf, cap);
        }
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (r == 0)
            break;
    }
    fclose(f);
    *len = n;
    return buf;
}

enum {
    OPT_HOST = 256,
    OPT_PORT,
    OPT_MODELS,
    OPT_NO_BUILTIN,
    OPT_DEVICE,
    OPT_COMPUTE_US,
    OPT_PER_ITEM_US,
    OPT_BATCH_WINDOW_US,
    OPT_MAX_BATCH,
    OPT_CONCURRENCY,
    OPT_QUEUE_LIMIT,
    OPT_THREADS,
    OPT_TENSOR_CONTENT,
    OPT_MAX_TENSOR_BYTES,
    OPT_RECORD,
    OPT_TLS_CERT,
    OPT_TLS_KEY,
    OPT_HELP,
};

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"host", required_argument, NULL, OPT_HOST},
        {"port", required_argument, NULL, OPT_PORT},
        {"models", required_argument, NULL, OPT_MODELS},
        {"no-builtin", no_argument, NULL, OPT_NO_BUILTIN},
        {"device", required_argument, NULL, OPT_DEVICE},
        {"compute-us", required_argument, NULL, OPT_COMPUTE_US},
        {"per-item-us", required_argument, NULL, OPT_PER_ITEM_US},
        {"batch-window-us", required_argument, NULL, OPT_BATCH_WINDOW_US},
        {"max-batch", required_argument, NULL, OPT_MAX_BATCH},
        {"concurrency", required_argument, NULL, OPT_CONCURRENCY},
        {"queue-limit", required_argument, NULL, OPT_QUEUE_LIMIT},
        {"threads", required_argument, NULL, OPT_THREADS},
        {"tensor-content", no_argument, NULL, OPT_TENSOR_CONTENT},
        {"max-tensor-bytes", required_argument, NULL, OPT_MAX_TENSOR_BYTES},
        {"record", required_argument, NULL, OPT_RECORD},
        {"tls-cert", required_argument, NULL, OPT_TLS_CERT},
        {"tls-key", required_argument, NULL, OPT_TLS_KEY},
        {"help", no_argument, NULL, OPT_HELP},
        {NULL, 0, NULL, 0},
    };
    struct sim_server_config cfg = {
        .host = "127.0.0.1", .port = 8500, .threads = 2, .device_name = "cpu"};
    /* -1 = "not given": the device profile's default applies */
    long long compute = -1, per_item = -1, window = -1, max_batch = -1, conc = -1, qlimit = -1;
    const char *models_path = NULL;
    int builtin = 1, c, port;
    unsigned long long v;
    struct sim_registry reg = {0};
    struct sim_server *srv;
    char err[1024];
    sigset_t sigs;
    int sig;

    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case OPT_HOST:
            cfg.host = optarg;
            break;
        case OPT_PORT:
            if (parse_uint("--port", optarg, 65535, &v) != 0)
                return 2;
            cfg.port = (int)v;
            break;
        case OPT_MODELS:
            models_path = optarg;
            break;
        case OPT_NO_BUILTIN:
            builtin = 0;
            break;
        case OPT_DEVICE:
            if (strcmp(optarg, "cpu") != 0 && strcmp(optarg, "gpu") != 0) {
                fprintf(stderr, "tfs-sim: --device is cpu or gpu, not '%s'\n", optarg);
                return 2;
            }
            cfg.device_name = optarg;
            break;
#define UFLAG(OPT, name, var, max)                                                                 \
    case OPT:                                                                                      \
        if (parse_uint(name, optarg, max, &v) != 0)                                                \
            return 2;                                                                              \
        var = (long long)v;                                                                        \
        break;
            UFLAG(OPT_COMPUTE_US, "--compute-us", compute, 60000000)
            UFLAG(OPT_PER_ITEM_US, "--per-item-us", per_item, 60000000)
            UFLAG(OPT_BATCH_WINDOW_US, "--batch-window-us", window, 60000000)
            UFLAG(OPT_MAX_BATCH, "--max-batch", max_batch, 1000000)
            UFLAG(OPT_CONCURRENCY, "--concurrency", conc, 1000000)
            UFLAG(OPT_QUEUE_LIMIT, "--queue-limit", qlimit, 100000000)
        case OPT_THREADS:
            if (parse_uint("--threads", optarg, 256, &v) != 0 || v == 0) {
                fprintf(stderr, "tfs-sim: --threads needs 1 to 256\n");
                return 2;
            }
            cfg.threads = (int)v;
            break;
        case OPT_TENSOR_CONTENT:
            cfg.handler.tensor_content = 1;
            break;
        case OPT_MAX_TENSOR_BYTES:
            if (parse_uint("--max-tensor-bytes", optarg, SIZE_MAX, &v) != 0)
                return 2;
            sim_tensor_max_bytes = (size_t)v;
            break;
        case OPT_RECORD:
            cfg.record_path = optarg;
            break;
        case OPT_TLS_CERT:
            cfg.tls_cert = optarg;
            break;
        case OPT_TLS_KEY:
            cfg.tls_key = optarg;
            break;
        case OPT_HELP:
            fputs(usage, stdout);
            return 0;
        default:
            fputs(usage, stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "tfs-sim: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }

    if ((cfg.tls_cert == NULL) != (cfg.tls_key == NULL)) {
        fprintf(stderr, "tfs-sim: --tls-cert and --tls-key go together\n");
        return 2;
    }
    int gpu = strcmp(cfg.device_name, "gpu") == 0;
    cfg.device.kind = gpu ? SIM_DEVICE_GPU : SIM_DEVICE_CPU;
    cfg.device.compute_us = (uint32_t)(compute >= 0 ? compute : gpu ? 2000 : 0);
    cfg.device.per_item_us = (uint32_t)(per_item >= 0 ? per_item : gpu ? 50 : 0);
    cfg.device.batch_window_us = (uint32_t)(window >= 0 ? window : gpu ? 1000 : 0);
    cfg.device.max_batch = (uint32_t)(max_batch >= 0 ? max_batch : 32);
    cfg.device.concurrency = (uint32_t)(conc >= 0 ? conc : gpu ? 1 : 0);
    cfg.device.queue_limit = (uint32_t)(qlimit >= 0 ? qlimit : gpu ? 128 : 0);

    if (builtin && sim_registry_add_builtins(&reg, err, sizeof(err)) != 0) {
        fprintf(stderr, "tfs-sim: built-in models: %s\n", err);
        return 1;
    }
    if (models_path != NULL) {
        size_t len;
        char *text = read_file(models_path, &len);
        if (text == NULL) {
            fprintf(stderr, "tfs-sim: cannot read %s: %s\n", models_path, strerror(errno));
            return 1;
        }
        int rv = sim_registry_add_json(&reg, text, len, models_path, err, sizeof(err));
        free(text);
        if (rv != 0) {
            fprintf(stderr, "tfs-sim: %s\n", err);
            sim_registry_dispose(&reg);
            return 1;
        }
    }

    /* Large tensors: glibc would mmap and munmap every buffer over its mmap threshold, and the
     * kernel's page faults and zeroing then cost 80% of a 600 KB Predict (bench/README.md).
     * Keep freed memory in the heap instead; a test backend can afford the retention. */
    mallopt(M_MMAP_THRESHOLD, 256 << 20);
    mallopt(M_TRIM_THRESHOLD, 512 << 20);

    /* Block the stop signals before gRPC starts its threads, so only sigwait() sees them. */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    grpc_init();
    srv = sim_server_start(&reg, &cfg, &port, err, sizeof(err));
    if (srv == NULL) {
        fprintf(stderr, "tfs-sim: %s\n", err);
        grpc_shutdown();
        sim_registry_dispose(&reg);
        return 1;
    }
    printf("tfs-sim listening on %s:%d device=%s models=", cfg.host, port, cfg.device_name);
    for (size_t i = 0; i < reg.n_models; i++)
        printf("%s%s", i ? "," : "", reg.models[i]->name);
    printf("\n");
    fflush(stdout);

    sigwait(&sigs, &sig);
    fprintf(stderr, "tfs-sim: signal %d, stopping\n", sig);
    sim_server_stop(srv);
    grpc_shutdown();
    sim_registry_dispose(&reg);
    return 0;
}
