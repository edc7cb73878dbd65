/* Sandbox stub of cusparse.h: only what the stub libcusparse exports. */
#ifndef CUSPARSE_H_
#define CUSPARSE_H_

#include "library_types.h"

#define CUSPARSE_VER_MAJOR @MAJOR@
#define CUSPARSE_VER_MINOR @MINOR@
#define CUSPARSE_VER_PATCH @PATCH@
#define CUSPARSE_VER_BUILD @BUILD@
#define CUSPARSE_VERSION (CUSPARSE_VER_MAJOR * 1000 + CUSPARSE_VER_MINOR * 100 + CUSPARSE_VER_PATCH)

typedef int cusparseStatus_t;
typedef struct cusparseContext *cusparseHandle_t;

#ifdef __cplusplus
extern "C" {
#endif
cusparseStatus_t cusparseGetVersion(cusparseHandle_t handle, int *version);
cusparseStatus_t cusparseGetProperty(libraryPropertyType type, int *value);
#ifdef __cplusplus
}
#endif

#endif /* CUSPARSE_H_ */
