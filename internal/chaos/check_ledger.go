package chaos

import (
	"github.com/google/uuid"

	"github.com/billing-oss/billing/domain"
)

// money is what invoices moved in one currency, in the terms of GET /v1/dashboard/revenue's
// totals over all time, derived here from the invoices' histories without the projector's code.
type money struct {
	Invoiced, Collected, Refunded, CreditGranted, CreditApplied, Voided, Uncollectible, Outstanding int64
}

// invoiceMoney adds up, per currency, what each invoice's history moved: its total invoiced
// (a credit invoice's negative credit applied grants credit instead), what was paid and
// refunded, its total again for each void (which also gives back the credit it used) and each
// write-off, and its total if still open.
func (s *store) invoiceMoney() map[string]money {
	out := map[string]money{}
	for id, inv := range s.invoices {
		m := out[inv.Currency]
		m.Invoiced += inv.Total
		m.Collected += inv.AmountPaid
		m.Refunded += inv.AmountRefunded
		m.CreditApplied += max(inv.CreditApplied, 0)
		m.CreditGranted += max(-inv.CreditApplied, 0)
		voids, writeOffs := s.endings(id)
		m.Voided += voids * inv.Total
		m.CreditGranted += voids * max(inv.CreditApplied, 0)
		m.Uncollectible += writeOffs * inv.Total
		if inv.Status == domain.InvoiceOpen {
			m.Outstanding += inv.Total
		}
		out[inv.Currency] = m
	}
	return out
}

// endings counts an invoice's voids and write-offs (marked uncollectible).
func (s *store) endings(id uuid.UUID) (voids, writeOffs int64) {
	for _, e := range s.streams[id] {
		switch s.decoded[e.ID].(type) {
		case domain.InvoiceVoided:
			voids++
		case domain.InvoiceMarkedUncollectible:
			writeOffs++
		}
	}
	return voids, writeOffs
}

// ledger: the customers' streams and the invoices' streams tell one story. A customer's stream
// numbers its invoices and keeps its credit balances; the invoices are separate streams written
// in the same transactions. So:
//   - a customer whose stream counts n invoices has exactly the invoices numbered 1 to n in its
//     series (domain.InvoiceNumber), and every invoice belongs to a customer stream that counts it;
//   - a customer's credit balance in each currency is what its invoices granted (credit invoices,
//     and credit given back by voids) less what they applied.
func (c *checker) ledger() {
	type books struct {
		numbers map[string]uuid.UUID // invoice number → invoice
		credit  map[string]int64     // currency → credit granted less applied
	}
	byCustomer := map[string]*books{}
	for _, id := range sortedIDs(c.store, c.store.invoices) {
		inv := c.store.invoices[id]
		b := byCustomer[inv.CustomerID]
		if b == nil {
			b = &books{numbers: map[string]uuid.UUID{}, credit: map[string]int64{}}
			byCustomer[inv.CustomerID] = b
		}
		if other, dup := b.numbers[inv.Number]; dup {
			c.report(CheckLedger, "invoices %s and %s of customer %s are both numbered %s", other, id, inv.CustomerID, inv.Number)
		}
		b.numbers[inv.Number] = id
		voids, _ := c.store.endings(id)
		b.credit[inv.Currency] += -inv.CreditApplied + voids*max(inv.CreditApplied, 0)
	}
	for _, id := range sortedIDs(c.store, c.store.customers) {
		cust := c.store.customers[id]
		b := byCustomer[cust.ID]
		delete(byCustomer, cust.ID)
		if b == nil {
			b = &books{}
		}
		if int64(len(b.numbers)) != cust.Invoices {
			c.report(CheckLedger, "customer %s's stream counts %d invoices; %d invoice streams are the customer's",
				cust.ID, cust.Invoices, len(b.numbers))
		}
		for seq := int64(1); seq <= cust.Invoices; seq++ {
			if n := domain.InvoiceNumber(cust.ID, seq); b.numbers[n] == uuid.Nil {
				c.report(CheckLedger, "customer %s has no invoice numbered %s", cust.ID, n)
			}
		}
		currencies := sortedKeys(cust.Credit)
		for cur := range b.credit {
			if _, ok := cust.Credit[cur]; !ok {
				currencies = append(currencies, cur)
			}
		}
		for _, cur := range currencies {
			if cust.Credit[cur] != b.credit[cur] {
				c.report(CheckLedger, "customer %s's credit balance in %s is %d; its invoices granted %d more than they applied",
					cust.ID, cur, cust.Credit[cur], b.credit[cur])
			}
		}
	}
	for _, customer := range sortedKeys(byCustomer) {
		c.report(CheckLedger, "customer %s has %d invoices and no customer stream", customer, len(byCustomer[customer].numbers))
	}
}
