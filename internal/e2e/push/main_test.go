package push_test

import (
	"testing"

	"github.com/parleychat/parley/internal/e2e"
)

func TestMain(m *testing.M) { e2e.Main(m) }
