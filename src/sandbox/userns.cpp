#include "sandbox/userns.h"
