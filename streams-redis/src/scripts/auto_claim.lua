-- Claiming idle pending entries, with the delivery count of each claimed entry.
-- KEYS[1]: the stream.
-- ARGV[1]: group. ARGV[2]: consumer. ARGV[3]: min idle ms. ARGV[4]: start id.
-- ARGV[5]: COUNT. ARGV[6]: '1' to end the page right after the first entry
-- that had been delivered before (its count after the claim is 2 or more).
-- Returns {next start, entries, deleted ids, delivery counts}: the counts are
-- in the order of the entries.
local key, group, consumer, min_idle = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
local cursor, count = ARGV[4], tonumber(ARGV[5])
local entries, counts, deleted = {}, {}, {}

local function take(page)
  local redelivered = false
  for _, entry in ipairs(page[2]) do
    -- Redis 6.2 lists entries deleted while pending as nil.
    if type(entry) == 'table' then
      local p = redis.call('XPENDING', key, group, entry[1], entry[1], 1, consumer)
      local n = (#p > 0) and p[1][4] or 0
      entries[#entries + 1] = entry
      counts[#counts + 1] = n
      if n >= 2 then
        redelivered = true
      end
    end
  end
  for _, id in ipairs(page[3] or {}) do
    deleted[#deleted + 1] = id
  end
  return redelivered
end

if ARGV[6] ~= '1' then
  local page = redis.call('XAUTOCLAIM', key, group, consumer, min_idle, cursor, 'COUNT', count)
  take(page)
  return {page[1], entries, deleted, counts}
end

-- One entry at a time, so the page can end right after a redelivered one;
-- at most `count` calls, each scanning at most 10 pending entries.
for _ = 1, count do
  local page = redis.call('XAUTOCLAIM', key, group, consumer, min_idle, cursor, 'COUNT', 1)
  cursor = page[1]
  if take(page) or cursor == '0-0' or #entries + #deleted >= count then
    break
  end
end
return {cursor, entries, deleted, counts}
