package memreg_test

import (
	"testing"

	"github.com/serverledge/serverledge/internal/registry"
	"github.com/serverledge/serverledge/internal/registry/memreg"
	"github.com/serverledge/serverledge/internal/registry/registrytest"
)

func TestConformance(t *testing.T) {
	registrytest.Run(t, func(t *testing.T) registry.Registry { return memreg.New() })
}
