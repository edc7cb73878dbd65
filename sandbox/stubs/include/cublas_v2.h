/* Sandbox stub of cublas_v2.h. */
#ifndef CUBLAS_V2_H_
#define CUBLAS_V2_H_

#include "cublas_api.h"

#define cublasCreate cublasCreate_v2
#define cublasGetVersion cublasGetVersion_v2

#endif /* CUBLAS_V2_H_ */
