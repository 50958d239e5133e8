-- One page of XAUTOCLAIM, with the delivery count of each claimed entry.
-- KEYS[1]: the stream.
-- ARGV[1]: group. ARGV[2]: consumer. ARGV[3]: min idle ms. ARGV[4]: start id.
-- ARGV[5]: COUNT.
-- Returns {next start, entries, deleted ids, delivery counts}: the counts are
-- in the order of the entries.
local key, group, consumer = KEYS[1], ARGV[1], ARGV[2]
local page = redis.call('XAUTOCLAIM', key, group, consumer, ARGV[3], ARGV[4], 'COUNT', ARGV[5])
local entries, counts = {}, {}
for _, entry in ipairs(page[2]) do
  -- Redis 6.2 lists entries deleted while pending as nil.
  if type(entry) == 'table' then
    local p = redis.call('XPENDING', key, group, entry[1], entry[1], 1, consumer)
    entries[#entries + 1] = entry
    counts[#counts + 1] = (#p > 0) and p[1][4] or 0
  end
end
return {page[1], entries, page[3] or {}, counts}
