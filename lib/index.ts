export { ChaiError, ErrorCode } from './errors';
export { devices, buildInfo, resolveDevice, Device, DeviceRequest, DeviceList, BuildInfo, CudaDevice } from './device';
export { matmul, rmsnorm, softmax, toHalf, fromHalf, WeightMatrix, WeightDType, HalfDType, OpOptions } from './ops';
export { loadModel, Model, ModelInfo, TensorInfo, LoadModelOptions, LoadProgress } from './model';
export { Session, SessionOptions, GenerateOptions, GeneratedToken, GenerationResult, FinishReason, CacheStats } from './session';
export { Tokenizer, SentencePieceTokenizer, BytePairTokenizer, StreamingDecoder, Metadata, MetadataValue } from './tokenizer';
export { SamplingOptions } from './sampling';
export { writeGguf, GgufWriteValue, GgufWriteTensor } from './gguf-writer';
export { writeSyntheticLlama, SyntheticLlamaConfig } from './synthetic';
