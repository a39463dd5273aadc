package registry

import memdb "github.com/hashicorp/go-memdb"

// Table and index names. Every table has a unique "id" index.
const (
	tableBackends = "backends"
	tablePools    = "pools"
	tableMeta     = "meta"

	indexID   = "id"
	indexPool = "pool"

	metaGeneration = "generation"
)

// schema returns the database schema: the single place it is defined.
func schema() *memdb.DBSchema {
	return &memdb.DBSchema{
		Tables: map[string]*memdb.TableSchema{
			tablePools:    poolsTable(),
			tableBackends: backendsTable(),
			tableMeta:     metaTable(),
		},
	}
}

func poolsTable() *memdb.TableSchema {
	return &memdb.TableSchema{
		Name: tablePools,
		Indexes: map[string]*memdb.IndexSchema{
			indexID: {
				Name:    indexID,
				Unique:  true,
				Indexer: &memdb.StringFieldIndex{Field: "Name"},
			},
		},
	}
}

func backendsTable() *memdb.TableSchema {
	return &memdb.TableSchema{
		Name: tableBackends,
		Indexes: map[string]*memdb.IndexSchema{
			indexID: {
				Name:   indexID,
				Unique: true,
				Indexer: &memdb.CompoundIndex{
					Indexes: []memdb.Indexer{
						&memdb.StringFieldIndex{Field: "Pool"},
						&memdb.StringFieldIndex{Field: "Address"},
					},
				},
			},
			indexPool: {
				Name:    indexPool,
				Indexer: &memdb.StringFieldIndex{Field: "Pool"},
			},
		},
	}
}

// metaRecord is a named scalar, such as the config generation.
type metaRecord struct {
	Key   string
	Value uint64
}

func metaTable() *memdb.TableSchema {
	return &memdb.TableSchema{
		Name: tableMeta,
		Indexes: map[string]*memdb.IndexSchema{
			indexID: {
				Name:    indexID,
				Unique:  true,
				Indexer: &memdb.StringFieldIndex{Field: "Key"},
			},
		},
	}
}
