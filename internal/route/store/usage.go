package store

import "github.com/omniedge/omni/internal/route/store/usagestore"

// SettingUsageRetentionDays is how many days usage records are kept.
const SettingUsageRetentionDays = "usage_retention_days"

// The usage records and their reads live in route/store/usagestore;
// *Store embeds its Table, and these names keep the gateway's callers
// unchanged.
type (
	UsageRecord     = usagestore.UsageRecord
	UsageFilter     = usagestore.UsageFilter
	UsageTotals     = usagestore.UsageTotals
	UsageBucket     = usagestore.UsageBucket
	UsageSample     = usagestore.UsageSample
	UsageSessionRow = usagestore.UsageSessionRow
	UsageGroup      = usagestore.UsageGroup
)
