/* Sandbox stub of cudnn_graph.h: only what the stub libcudnn exports. */
#ifndef CUDNN_GRAPH_H_
#define CUDNN_GRAPH_H_

#include <stddef.h>
#include "cudnn_version.h"
#include "library_types.h"

typedef int cudnnStatus_t;

#ifdef __cplusplus
extern "C" {
#endif
size_t cudnnGetVersion(void);
size_t cudnnGetCudartVersion(void);
cudnnStatus_t cudnnGetProperty(libraryPropertyType type, int *value);
const char *cudnnGetErrorString(cudnnStatus_t status);
#ifdef __cplusplus
}
#endif

#endif /* CUDNN_GRAPH_H_ */
