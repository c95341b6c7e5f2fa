/*
 * models.h - tfs-sim's model registry: the built-in test models of spec/tfserving.md §6 and
 * models loaded from a JSON model file (format in docs/tfs-sim.md).
 *
 * A registry is built once at start-up and is read-only afterwards, except for the atomic
 * version states (changed through the control method) and counters, so every server thread
 * may read it without locks.
 */
#ifndef SIM_MODELS_H
#define SIM_MODELS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <grpc/status.h>

#include "tensorflow/core/framework/tensor.pb-c.h"
#include "tensorflow_serving/apis/classification.pb-c.h"
#include "tensorflow_serving/apis/get_model_metadata.pb-c.h"
#include "tensorflow_serving/apis/get_model_status.pb-c.h"
#include "tensorflow_serving/apis/regression.pb-c.h"

#include "util.h"

enum sim_shape_kind {
    SIM_SHAPE_NONE = 0, /* TensorInfo has no tensor_shape (half_plus_three) */
    SIM_SHAPE_DIMS,     /* known rank; -1 for an unknown dimension */
    SIM_SHAPE_UNKNOWN,  /* unknown_rank: true */
};

struct sim_tensor_info {
    char *alias;       /* signature key */
    char *tensor_name; /* graph tensor name, e.g. "x:0" */
    int dtype;         /* tensorflow DataType, as declared (may be a _REF type) */
    enum sim_shape_kind shape_kind;
    size_t rank;
    int64_t *dims; /* rank entries */
};

struct sim_default {
    char *alias;
    Tensorflow__TensorProto *tensor; /* in the model's pool */
};

struct sim_signature {
    char *name;
    char *method_name;
    size_t n_inputs;
    struct sim_tensor_info *inputs; /* sorted by alias */
    size_t n_outputs;
    struct sim_tensor_info *outputs; /* sorted by alias */
    size_t n_defaults;
    struct sim_default *defaults; /* SignatureDef.defaults (TF2 models) */
    /* Arithmetic for this signature: y = fl(fl(a*x) + b) (spec §6). Classify and regress read
     * x from the Example feature |feature|; without it the request fails unless
     * |has_feature_default|. */
    double a, b;
    char *feature;
    int has_feature_default;
    float feature_default;
};

struct sim_version {
    int64_t version;
    _Atomic int state; /* Tensorflow__Serving__ModelVersionStatus__State */
};

struct sim_label {
    char *name;
    int64_t version;
};

enum sim_behavior {
    SIM_BEHAVIOR_AFFINE = 0, /* every output = a*x+b over the first input (sorted alias) */
    SIM_BEHAVIOR_IDENTITY,   /* every output echoes the input of the same alias, else the first */
};

struct sim_model {
    char *name;
    size_t n_versions;
    struct sim_version *versions; /* sorted by descending version */
    size_t n_labels;
    struct sim_label *labels;
    size_t n_signatures;
    struct sim_signature *signatures;
    enum sim_behavior behavior;

    /* Fixed answers from the model file; NULL when the model computes its answers. */
    grpc_status_code error_code; /* OK = no forced error */
    char *error_message;
    size_t n_fixed_outputs;
    char **fixed_output_aliases;
    Tensorflow__TensorProto **fixed_outputs;
    Tensorflow__Serving__ClassificationResult *fixed_classify;
    Tensorflow__Serving__RegressionResult *fixed_regress;
    Tensorflow__Serving__GetModelStatusResponse *fixed_status;
    Tensorflow__Serving__GetModelMetadataResponse *fixed_metadata;

    uint8_t *sigmap; /* packed SignatureDefMap, served by GetModelMetadata */
    size_t sigmap_len;

    _Atomic uint64_t calls; /* every call naming this model */
    struct sim_pool pool;   /* owns everything above */
};

struct sim_registry {
    size_t n_models;
    struct sim_model **models; /* owned */
};

/* Adds the built-in models (half_plus_two with versions 123/124 and labels stable/canary,
 * half_plus_three). Returns 0; -1 only if the embedded JSON is broken (a bug). */
int sim_registry_add_builtins(struct sim_registry *reg, char *err, size_t errlen);

/* Adds every model of a model file's JSON text. A model named like an existing one replaces
 * it. Returns 0, or -1 with a message naming the offending key in |err|. */
int sim_registry_add_json(struct sim_registry *reg, const char *text, size_t len,
                          const char *origin, char *err, size_t errlen);

struct sim_model *sim_registry_find(const struct sim_registry *reg, const char *name);
void sim_registry_dispose(struct sim_registry *reg);

const struct sim_signature *sim_model_signature(const struct sim_model *m, const char *name);
/* Returns the version entry or NULL. */
struct sim_version *sim_model_version(struct sim_model *m, int64_t version);
/* Highest AVAILABLE version, or NULL. */
struct sim_version *sim_model_latest(struct sim_model *m);
/* Returns 0 and the label's version, or -1 when the label is unknown. */
int sim_model_label(const struct sim_model *m, const char *label, int64_t *version);

/* "AVAILABLE" -> 30; -1 when unknown. */
int sim_state_from_name(const char *name);

#endif /* SIM_MODELS_H */
