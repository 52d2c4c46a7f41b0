package pgload

import (
	"context"
	"net"

	"github.com/jackc/pgx/v5/pgconn"
)

func pgconnDial(d Dialer) pgconn.DialFunc {
	return func(ctx context.Context, network, addr string) (net.Conn, error) { return d(ctx, network, addr) }
}
