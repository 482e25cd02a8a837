// Hugging Face folders: config.json plus weights in safetensors files (one model.safetensors, or
// shards listed by model.safetensors.index.json). The folder is translated into the description
// the GGUF reader produces (GGUF metadata keys, GGUF tensor names, views into the memory-mapped
// shards), so the architecture code and the forward pass see no difference.
#pragma once
#include <memory>
#include <string>

#include "gguf.h"

namespace chai {

// Throws Error(ModelFormat) for missing or malformed files and shapes that disagree with
// config.json, Error(Unsupported) for a model type, option or tensor type the engine cannot run.
std::shared_ptr<GgufFile> open_hf_folder(const std::string& dir);

// A GGUF file or, when `path` is a directory, a Hugging Face folder.
std::shared_ptr<GgufFile> open_model_description(const std::string& path);

}  // namespace chai
