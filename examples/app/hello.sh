#!/bin/sh
echo "hello from a kiln-built image"
