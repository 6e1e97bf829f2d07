#pragma once
// The row datasets of a run file, in one table shared by RunWriter (creates them) and RunReader
// (opens and checks them), so the two cannot drift apart. Every row dataset is chunked with an
// unlimited first dimension (rows) and fixed inner dimensions that follow from the header.
#include <cstdint>
#include <string>
#include <vector>

#include "store/run_layout.h"

namespace moe {

enum class RunDtype { I32, I64, F32, F64, U32 };

const char* run_dtype_name(RunDtype t);  // "int32", "int64", "float32", "float64", "uint32"

struct RunDatasetSpec {
    std::string group;           // "metrics", "eval", "experts", "routing"
    std::string name;            // "loss", "load", ...
    RunDtype dtype;
    std::vector<int64_t> inner;  // shape after the row dimension ([] for a 1-D column)
    int64_t chunk_rows;          // rows per chunk

    std::string path() const { return "/" + group + "/" + name; }
    int64_t row_elements() const;  // product of inner
};

// The datasets of one group, in the order the writer writes a row (the reader relies on the
// group, not the order). Groups: metrics, eval, experts, routing (version 1); quant, sparsity
// (version 2).
std::vector<RunDatasetSpec> run_group_datasets(const std::string& group, const RunHeader& h);

inline const std::vector<std::string>& run_row_groups() {
    static const std::vector<std::string> groups{"metrics", "eval",     "experts", "routing",
                                                 "quant",   "sparsity", "parallel"};
    return groups;
}

// The row groups a file of format_version `version` has.
inline std::vector<std::string> run_row_groups(int64_t version) {
    if (version >= 3) return run_row_groups();
    if (version == 2) return {"metrics", "eval", "experts", "routing", "quant", "sparsity"};
    return {"metrics", "eval", "experts", "routing"};
}

// /metrics column names, in MetricsRow order.
const std::vector<std::string>& run_metrics_columns();

}  // namespace moe
