#include "sandbox/user.h"
