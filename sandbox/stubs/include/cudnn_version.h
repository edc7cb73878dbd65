/* Sandbox stub of cudnn_version.h (cuDNN @MAJOR@.@MINOR@.@PATCH@). */
#ifndef CUDNN_VERSION_H_
#define CUDNN_VERSION_H_

#define CUDNN_MAJOR @MAJOR@
#define CUDNN_MINOR @MINOR@
#define CUDNN_PATCHLEVEL @PATCH@

#define CUDNN_VERSION (CUDNN_MAJOR * 10000 + CUDNN_MINOR * 100 + CUDNN_PATCHLEVEL)

#endif /* CUDNN_VERSION_H_ */
