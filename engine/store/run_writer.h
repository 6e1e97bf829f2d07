#pragma once
// Writes one run file (HDF5) in SWMR mode, so the GUI (or h5py) can read it while training runs
// and a crash leaves a file with every row flushed before it. Layout: docs/run-format.md.
//
// The constructor creates every group, dataset and attribute and then switches the file to SWMR
// writing; after that only rows are appended (HDF5 1.10 SWMR forbids creating objects then).
// Errors are FileErrors naming the path, the dataset and the value; after a failed append the
// writer refuses further appends (columns may be uneven; the reader copes with that).
#include <memory>
#include <string>

#include "store/run_layout.h"

namespace moe {

class RunWriter {
public:
    // Creates `path`. An existing file is a FileError unless overwrite is true.
    RunWriter(const std::string& path, const RunHeader& header, bool overwrite = false);
    ~RunWriter();  // closes without throwing (an error is logged)
    RunWriter(RunWriter&&) noexcept;
    RunWriter& operator=(RunWriter&&) noexcept;
    RunWriter(const RunWriter&) = delete;
    RunWriter& operator=(const RunWriter&) = delete;

    const std::string& path() const { return path_; }
    // The header as written (created and engine_version filled in).
    const RunHeader& header() const { return header_; }

    // Append one row; sizes are checked against the header (L, E, K, T_p, labels).
    void append(const MetricsRow& row);
    void append(const EvalRow& row);
    void append(const ExpertsRow& row);
    void append(const RoutingRow& row);
    void append(const QuantRow& row);
    void append(const SparsityRow& row);
    void append(const ParallelRow& row);

    int64_t metrics_rows() const;
    int64_t eval_rows() const;
    int64_t experts_rows() const;
    int64_t routing_rows() const;
    int64_t quant_rows() const;
    int64_t sparsity_rows() const;
    int64_t parallel_rows() const;

    // Makes every appended row visible to readers and durable against a crash of this process
    // (H5Fflush). Cheap: a few small writes, fine to call at every log step.
    void flush();
    // Flushes and closes the file; afterwards the file is a plain HDF5 file. Throws on failure.
    void close();
    bool is_open() const;

private:
    struct Impl;
    std::string path_;
    RunHeader header_;
    std::unique_ptr<Impl> impl_;
};

// Now, as ISO 8601 UTC with seconds: "2025-01-31T12:00:00Z".
std::string iso8601_utc_now();

}  // namespace moe
